"""Family adapters: checkpoint tensor names -> canonical roles.

Importing this package registers every adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from terrain.anatomy import (  # noqa: F401  (registration side effect)
    bert,
    clip,
    dinov2,
    gpt2,
    llama,
    olmo3,
    open_clip,
    qwen3,
    qwen3_5,
    t5,
)
from terrain.anatomy.base import Anatomy, TensorRole, TensorSource
from terrain.anatomy.registry import family_for_config, family_names, get_family


def build_anatomy(
    source: TensorSource, config: Mapping[str, Any], family: str | None = None
) -> Anatomy:
    """Map every tensor of `source` to a role, with the named family or the config's model_type."""
    chosen = get_family(family) if family else family_for_config(source.name, config)
    return chosen.build(source, config)


__all__ = ["Anatomy", "TensorRole", "TensorSource", "build_anatomy", "family_names"]
