"""Checkpoint tensor names -> canonical roles, by the adapter of each family.

The adapters are declared with their families (terrain/families/, `Family.anatomy`);
this package holds what they share (base, shapes, config_fields, meta) and `build_anatomy`,
and names base's vocabulary of an adapter (its rules, `classify`, the types) for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from terrain.anatomy.base import (
    Anatomy,
    Dimensions,
    Rule,
    TensorRole,
    TensorSource,
    Unclaimed,
    classify,
    rule,
    unclaimed,
)
from terrain.family import family_for_config, family_names, get_family


def build_anatomy(
    source: TensorSource, config: Mapping[str, Any], family: str | None = None
) -> Anatomy:
    """Map every tensor of `source` to a role, with the named family or the config's model_type."""
    chosen = get_family(family) if family else family_for_config(source.name, config)
    return chosen.anatomy(source, config)


__all__ = [
    "Anatomy",
    "Dimensions",
    "Rule",
    "TensorRole",
    "TensorSource",
    "Unclaimed",
    "build_anatomy",
    "classify",
    "family_names",
    "rule",
    "unclaimed",
]
