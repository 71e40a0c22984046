"""A typed registry of family adapters, filled by a decorator."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from terrain.anatomy.base import Anatomy, TensorSource
from terrain.errors import AnatomyError
from terrain.suggest import did_you_mean, known

Builder = Callable[[TensorSource, Mapping[str, Any]], Anatomy]


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    build: Builder


_FAMILIES: dict[str, Family] = {}


def register(name: str, *, model_types: tuple[str, ...]) -> Callable[[Builder], Builder]:
    """Register `build(source, config) -> Anatomy` as the adapter of `name`; refuse duplicates."""

    def decorate(build: Builder) -> Builder:
        if name in _FAMILIES:
            raise ValueError(f"anatomy family {name!r} is registered twice")
        taken = {t: f.name for f in _FAMILIES.values() for t in f.model_types}
        for t in model_types:
            if t in taken:
                raise ValueError(f"model_type {t!r} already belongs to family {taken[t]!r}")
        _FAMILIES[name] = Family(name, model_types, build)
        return build

    return decorate


def family_names() -> list[str]:
    return sorted(_FAMILIES)


def get_family(name: str) -> Family:
    try:
        return _FAMILIES[name]
    except KeyError:
        raise AnatomyError(
            f"unknown anatomy family {name!r}{did_you_mean(name, _FAMILIES)}; "
            f"known families: {known(_FAMILIES)}"
        ) from None


def family_for_config(model_name: str, config: Mapping[str, Any]) -> Family:
    """The family whose adapter reads this config's `model_type`."""
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        raise AnatomyError(f"model {model_name!r}: config.json has no 'model_type' string")
    for family in _FAMILIES.values():
        if model_type in family.model_types:
            return family
    types = [t for f in _FAMILIES.values() for t in f.model_types]
    raise AnatomyError(
        f"model {model_name!r}: unknown architecture: config.json model_type {model_type!r} "
        f"has no anatomy adapter{did_you_mean(model_type, types)}; supported model types: "
        f"{known(types)}"
    )
