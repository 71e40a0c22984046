"""Config-only census: a model's anatomy from its config alone, no weights allocated.

The model is built on PyTorch's meta device (`with torch.device("meta"): cls(config)`),
so every parameter has a shape and no storage; a 7B model takes well under a second.
The tensor names are those `save_pretrained` writes (tied copies dropped, transformers'
checkpoint-format renames reverted), so the census equals the census of a real
checkpoint of that config. A family without a transformers module lays its tensors out by
name (`NamedLayout`: open_clip).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from terrain.anatomy.base import Anatomy
from terrain.architecture import meta_model
from terrain.errors import AnatomyError, CheckpointError
from terrain.family import family_for_config, get_family, named_layout

# Config keys that say where a checkpoint came from, not what it computes.


class MetaSource:
    """A TensorSource with shapes only: names and shapes of a model built on the meta device."""

    def __init__(self, name: str, shapes: Mapping[str, tuple[int, ...]]) -> None:
        self._name = name
        self._shapes = dict(shapes)

    @property
    def name(self) -> str:
        return self._name

    def tensor_shapes(self) -> Mapping[str, tuple[int, ...]]:
        return self._shapes

    def tensor(self, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        raise CheckpointError(
            f"model {self._name!r}: tensor {name!r} has no values: this anatomy was built from "
            "the config alone (meta device, shapes only); open a checkpoint to read weights"
        )


def meta_shapes(config: Mapping[str, Any], name: str = "config") -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor a checkpoint of `config` holds, without allocating any."""
    return _on_meta(config, name)[0]


def _on_meta(
    config: Mapping[str, Any], name: str
) -> tuple[dict[str, tuple[int, ...]], Mapping[str, Any]]:
    """Shapes of the model built on the meta device, and the config as transformers completes
    it (defaults filled in, e.g. `layer_types`), as a saved checkpoint's config.json has it."""
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        raise AnatomyError(f"model {name!r}: config has no 'model_type' string")
    layout = named_layout(config)
    if layout is not None:
        with torch.device("meta"):
            laid_out = layout.module(config, name)
        return {k: tuple(v.shape) for k, v in laid_out.state_dict().items()}, config
    model, hf_config = meta_model(config, model_type, f"model {name!r}", AnatomyError)
    shapes = {k: tuple(v.shape) for k, v in _as_saved(model).items()}
    completed: dict[str, Any] = hf_config.to_dict()
    return shapes, completed


def _as_saved(model: Any) -> dict[str, torch.Tensor]:
    """The state dict `save_pretrained` would write: tied copies dropped, renames reverted."""
    state: dict[str, torch.Tensor] = model.state_dict()
    try:
        from transformers.core_model_loading import revert_weight_conversion
        from transformers.modeling_utils import remove_tied_weights_from_state_dict
    except ImportError:  # another transformers: drop tensors shared with an earlier name
        seen: set[int] = set()
        kept = {}
        for key, value in model.state_dict(keep_vars=True).items():
            if id(value) not in seen:
                seen.add(id(value))
                kept[key] = state[key]
        return kept
    state = remove_tied_weights_from_state_dict(state, model)
    reverted: dict[str, torch.Tensor] = revert_weight_conversion(model, state)
    return reverted


def anatomy_from_config(
    config: Mapping[str, Any], family: str | None = None, *, name: str = "config"
) -> Anatomy:
    """The Anatomy of a checkpoint of `config`, from shapes alone; its reads raise."""
    chosen = get_family(family) if family else family_for_config(name, config)
    shapes, completed = _on_meta(config, name)
    return chosen.anatomy(MetaSource(name, shapes), completed)


def census_from_config(
    config: Mapping[str, Any], family: str | None = None, *, name: str = "config"
) -> dict[str, Any]:
    """Layers, heads, roles and parameter counts of `config`'s model, without its weights."""
    census = anatomy_from_config(config, family, name=name).census()
    census["weights"] = "none: config-only census (meta device)"
    return census
