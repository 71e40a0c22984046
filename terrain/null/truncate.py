"""A config cut down to a few layers of each type: the shape of a large model's null.

At random init every layer of a stack draws its tensors from the same distribution, so a
null needs only a few layers to give every statistic of one (shape, init) class: `per_type`
of each layer type per stack (of each type, so that a hybrid stack's full-attention layers
are not lost among its linear ones; the nulls of large models keep one, and take the
cross-layer null from its exact law for independent layers). The kept layers are named,
so that a report can say which were generated.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

# Keys holding a stack's layer count, at the top of a config or in a tower's section.
LAYER_COUNT_KEYS = ("num_hidden_layers", "num_layers", "num_decoder_layers", "n_layer", "depth")
# Tower sections (transformers' *_config, open_clip's *_cfg) with counts of their own.
_SECTIONS = ("text_config", "vision_config", "text_cfg", "vision_cfg")
_OPEN_CLIP_COUNT = "layers"
# The counts that `layer_types` describes (one type per layer of that stack).
_TYPED_COUNTS = ("num_hidden_layers", "num_layers")


def _kept(n: int, types: list[Any] | None, per_type: int) -> list[int]:
    """The first `per_type` layers of each type (of all layers when the config has none)."""
    if not isinstance(types, list) or len(types) != n:
        return list(range(min(n, per_type)))
    seen: dict[Any, int] = {}
    out = []
    for i, t in enumerate(types):
        if seen.get(t, 0) < per_type:
            seen[t] = seen.get(t, 0) + 1
            out.append(i)
    return out


def _cut_section(section: dict[str, Any], per_type: int, keys: tuple[str, ...]) -> dict[str, Any]:
    """Cut every layer count of one section; returns {key: kept layer indices}."""
    kept: dict[str, Any] = {}
    types = section.get("layer_types")
    for key in keys:
        n = section.get(key)
        if not isinstance(n, int) or isinstance(n, bool) or n <= per_type:
            continue
        layers = _kept(n, types if key in ("num_hidden_layers", "num_layers") else None, per_type)
        section[key] = len(layers)
        kept[key] = layers
        if (
            isinstance(types, list)
            and len(types) == n
            and key in ("num_hidden_layers", "num_layers")
        ):
            section["layer_types"] = [types[i] for i in layers]
    return kept


def truncated_config(
    config: Mapping[str, Any], per_type: int = 2
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(a copy of `config` with at most `per_type` layers of each type per stack, the kept
    layer indices by section and key) — e.g. {"text_config.num_hidden_layers": [0, 1, 3, 7]}."""
    out = copy.deepcopy(dict(config))
    kept = {k: v for k, v in _cut_section(out, per_type, LAYER_COUNT_KEYS).items()}
    for name in _SECTIONS:
        section = out.get(name)
        if isinstance(section, dict):
            keys = (
                (*LAYER_COUNT_KEYS, _OPEN_CLIP_COUNT) if name.endswith("_cfg") else LAYER_COUNT_KEYS
            )
            for key, layers in _cut_section(section, per_type, keys).items():
                kept[f"{name}.{key}"] = layers
    return out, kept
