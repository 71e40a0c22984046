"""Reading required fields of a config.json with errors that name the model and field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from terrain.errors import AnatomyError


def require_int(model_name: str, config: Mapping[str, Any], key: str) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise AnatomyError(
            f"model {model_name!r}: config.json field {key!r} must be a positive integer, "
            f"got {value!r}"
        )
    return value


def optional_int(model_name: str, config: Mapping[str, Any], key: str, default: int) -> int:
    """A positive integer field that may be absent or null (then `default`)."""
    if config.get(key) is None:
        return default
    return require_int(model_name, config, key)


def require_number(model_name: str, config: Mapping[str, Any], key: str) -> float:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise AnatomyError(
            f"model {model_name!r}: config.json field {key!r} must be a positive number, "
            f"got {value!r}"
        )
    return float(value)


def sub_config(model_name: str, config: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A nested config object (e.g. `text_config`, `vision_cfg`)."""
    value = config.get(key)
    if not isinstance(value, Mapping):
        raise AnatomyError(
            f"model {model_name!r}: config.json field {key!r} must be an object, got {value!r}"
        )
    return value


def image_grid(model_name: str, config: Mapping[str, Any], key: str, patch: int) -> int:
    """Number of patches of an image of `config[key]` (an int, or [height, width]) pixels."""
    value = config.get(key)
    sides = list(value) if isinstance(value, list | tuple) else [value, value]
    ints = [s for s in sides if isinstance(s, int) and not isinstance(s, bool) and s >= patch]
    if len(sides) != 2 or len(ints) != 2:
        raise AnatomyError(
            f"model {model_name!r}: config.json field {key!r} must be an image size of at "
            f"least the patch size {patch} (an integer or [height, width]), got {value!r}"
        )
    return ints[0] // patch * (ints[1] // patch)
