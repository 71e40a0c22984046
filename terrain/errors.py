"""One error hierarchy: every message names what failed and where (file, model, field, tensor)."""

from __future__ import annotations


class TerrainError(Exception):
    """Base of every error terrain raises on bad input."""


class ConfigError(TerrainError):
    """models.yaml is not valid; the message names file, model and field."""


class SourceError(TerrainError):
    """A model's source cannot be resolved to a checkpoint directory."""


class CheckpointError(TerrainError):
    """A checkpoint's files cannot be read, or a tensor in them is unusable."""


class AnatomyError(TerrainError):
    """The family adapter cannot place the checkpoint's tensors."""


class DeltaError(TerrainError):
    """Two checkpoints cannot be compared tensor by tensor (another architecture, nothing
    in common)."""
