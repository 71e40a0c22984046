"""The two fields of a config.json that choose code: `model_type` and `architectures`.

A checkpoint's config is input from anywhere, and these two strings reach the file system
(a replica's cache folder is named after its model_type) and attribute lookups on the
transformers package (`architectures[0]` names the class a module is built from). Both
are checked before use: a model_type is a plain name (no `/`, no `..`), `architectures`
is a list of class names, and the class is looked up only among transformers' model
classes, so that a name such as "pipeline" never calls the function it names.

Here too: the config keys that say where a checkpoint came from rather than what it
computes (`PROVENANCE_KEYS`), and the model a config builds on the meta device.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from terrain.errors import CheckpointError
from terrain.suggest import did_you_mean

# Config keys that say where a checkpoint came from, not what it computes.
PROVENANCE_KEYS = ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "_commit_hash")
_MODEL_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CLASS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "…"


def check_config_fields(where: str, config: Mapping[str, Any]) -> None:
    """Refuse a model_type or architectures that is not a plain name (see the docstring)."""
    model_type = config.get("model_type")
    if model_type is not None and not (
        isinstance(model_type, str) and _MODEL_TYPE.match(model_type) and ".." not in model_type
    ):
        raise CheckpointError(
            f"{where}: field 'model_type' is {_shown(model_type)}, not a model type name "
            "(letters, digits, '_', '-', '.')"
        )
    names = config.get("architectures")
    if names is None:
        return
    if not isinstance(names, list) or not all(
        isinstance(n, str) and _CLASS_NAME.match(n) for n in names
    ):
        raise CheckpointError(
            f"{where}: field 'architectures' is {_shown(names)}, not a list of class names"
        )


def model_class(where: str, config: Mapping[str, Any], *, remote_code: bool = False) -> Any:
    """The transformers model class `architectures[0]` names, or None when the config names
    none (then AutoModel chooses by model_type).

    A name that is not a transformers model class is refused, unless the model entry opted
    into remote code (`trust_remote_code: true`), whose classes live in the checkpoint's
    `auto_map` files and are built through AutoModel.
    """
    import transformers

    check_config_fields(where, config)
    names = config.get("architectures") or []
    if not names:
        return None
    name = names[0]
    found = getattr(transformers, name, None)
    if isinstance(found, type) and issubclass(found, transformers.PreTrainedModel):
        return found
    if remote_code and "auto_map" in config:
        return None
    known = [n for n in dir(transformers) if n.endswith(("Model", "LMHeadModel", "ForCausalLM"))]
    raise CheckpointError(
        f"{where}: field 'architectures' names {name!r}, which is not a model class of "
        f"transformers {transformers.__version__}{did_you_mean(name, known)}"
    )


def meta_model(
    config: Mapping[str, Any], model_type: str, label: str, error: type[Exception]
) -> tuple[Any, Any]:
    """transformers' model of `config` (provenance keys left out) on the meta device (shapes,
    no storage), and its config as transformers completes it; `error`, naming `label`, when
    transformers cannot build the config."""
    import torch
    import transformers

    clean = {k: v for k, v in config.items() if k not in (*PROVENANCE_KEYS, "model_type")}
    try:
        hf_config = transformers.AutoConfig.for_model(model_type, **clean)
    except (ValueError, KeyError, TypeError) as e:
        raise error(f"{label}: transformers cannot build the config: {e}") from None
    cls = model_class(f"{label}: config", clean)
    build: Any = cls if cls is not None else transformers.AutoModel.from_config
    with torch.device("meta"):
        return build(hf_config), hf_config
