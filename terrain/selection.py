"""Which models a run measures: names from models.yaml, or ad hoc paths and hub ids."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from pathlib import Path

from terrain.config import ModelsConfig, ModelSpec
from terrain.errors import ConfigError
from terrain.suggest import did_you_mean, known


def select_models(
    config: ModelsConfig, requested: Sequence[str], option: str = "--model"
) -> list[ModelSpec]:
    """Specs for `--model` values; defaults when none. Unknown names fail with a suggestion.

    A value that is not a name but an existing path, or a hub id (`org/name`), runs that
    checkpoint with default expectations. A shell-style pattern (`'*-random'`) selects
    every entry whose name matches it, in the file's order. `option`: the command-line
    option the values come from, as messages name it (`--base-model` resolves alike).
    """
    if not requested:
        chosen = config.defaults()
        if not chosen:
            raise ConfigError(
                f"{config.path}: no model is marked 'default: true'; pass --model NAME"
            )
        return chosen
    out: list[ModelSpec] = []
    for value in dict.fromkeys(requested):  # keep order, drop repeats
        if not value.strip():
            raise ConfigError(f"{option}: an empty value; give a model name, a folder or a hub id")
        if len(value) > 4096 or "\x00" in value:
            raise ConfigError(f"{option} {value[:60]!r}…: not a model name, folder or hub id")
        if value in config.models:
            out.append(config.models[value])
        elif _is_pattern(value) and not Path(value).expanduser().exists():
            matched = fnmatch.filter(config.models, value)
            if not matched:
                raise ConfigError(
                    f"{option} {value!r}: no model in {config.path} matches; "
                    f"known models: {known(config.models)}"
                )
            out.extend(config.models[name] for name in matched)
        elif _is_path_or_hub_id(value):
            out.append(ModelSpec(name=value, source=value))
        else:
            raise ConfigError(
                f"{option} {value!r}: not a model in {config.path}"
                f"{did_you_mean(value, config.models)}, nor an existing path or hub id; "
                f"known models: {known(config.models)}"
            )
    return list({spec.name: spec for spec in out}.values())  # a model once, first place


def _is_pattern(value: str) -> bool:
    return any(c in value for c in "*?[")


def _is_path_or_hub_id(value: str) -> bool:
    if Path(value).expanduser().exists() or value.startswith((".", "/", "~")):
        return True
    return "/" in value and not value.startswith(("synthetic:", "package:"))


def replica_hint(config: ModelsConfig, spec: ModelSpec) -> str | None:
    """The models.yaml entry that is the random-init replica of `spec`, if one is named so."""
    for candidate in (f"{spec.name}-random", f"{spec.name.rsplit('/', 1)[-1]}-random"):
        if candidate in config.models and config.models[candidate].is_synthetic:
            return candidate
    return None
