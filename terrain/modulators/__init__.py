"""Residual-stream modulators (research notebook sections 7, 8 and 12) and their attachment.

- `lerp.LerpModulator`: out = (1 − a)·h + a·proj(geo_embed(token_ids)), a = sigmoid(logit).
- `field.FieldModulator`: k-simplex channel experts gate the active residual dimensions,
  blended as (1 − α) + α·gate with α clamped to [0.001, 0.35]; a null space is never touched.
- `attach.attach`: hooks a modulator onto the blocks an Anatomy finds in any supported
  model; `Attachment.detach()` removes every hook, restoring the model exactly.
"""

from terrain.modulators.attach import Attachment, attach, residual_blocks
from terrain.modulators.field import FieldModulator, FieldModulatorConfig
from terrain.modulators.lerp import LerpModulator

__all__ = [
    "Attachment",
    "FieldModulator",
    "FieldModulatorConfig",
    "LerpModulator",
    "attach",
    "residual_blocks",
]
