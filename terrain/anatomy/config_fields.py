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
