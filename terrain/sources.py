"""Source strings -> checkpoint folders.

    google-t5/t5-small              hub id: the Hugging Face cache, then the network
    ./path/to/dir                   a local folder with config.json + *.safetensors
    ./path/to/model.gguf            a GGUF file (or a folder holding only one)
    package:<module>/<subdir>       a folder shipped inside an installed Python package
    synthetic:<name>                seeded random init of fixtures/configs/<name>.json

A source that cannot be resolved is a SourceError naming the model and the fix; there is
never a silent substitution (random-init values must not appear under a real name).
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from terrain.errors import SourceError
from terrain.suggest import did_you_mean, known
from terrain.synthetic import random_init_replica

SourceKind = Literal["hub", "local", "package", "synthetic"]
SYNTHETIC_SEED = 0


@dataclass(frozen=True)
class ResolvedSource:
    model: str
    source: str
    kind: SourceKind
    path: Path
    random_init: bool

    @property
    def provenance(self) -> str:
        return "random init (synthetic replica)" if self.random_init else "pretrained weights"


@dataclass(frozen=True)
class SourceContext:
    synthetic_configs: tuple[Path, ...]  # searched in order for <name>.json
    cache_dir: Path
    replica_hint: str | None = None  # name of a models.yaml entry to suggest when a hub id fails


def resolve(model: str, source: str, ctx: SourceContext) -> ResolvedSource:
    if source.startswith("synthetic:"):
        return _synthetic(model, source, ctx)
    if source.startswith("package:"):
        return ResolvedSource(model, source, "package", _package(model, source), False)
    local = Path(os.path.expanduser(source))
    if local.exists() or source.startswith((".", "/", "~")):
        if local.is_file() and local.suffix == ".gguf":
            return ResolvedSource(model, source, "local", local, False)
        if not local.is_dir():
            raise SourceError(
                f"model {model!r}: local checkpoint directory {source!r} does not exist"
            )
        from terrain.synthetic import is_random_init

        return ResolvedSource(model, source, "local", local, is_random_init(local))
    return ResolvedSource(model, source, "hub", _hub(model, source, ctx), False)


def synthetic_config_names(ctx: SourceContext) -> list[str]:
    return sorted({p.stem for d in ctx.synthetic_configs for p in d.glob("*.json")})


def _synthetic(model: str, source: str, ctx: SourceContext) -> ResolvedSource:
    name = source.removeprefix("synthetic:")
    found = [d / f"{name}.json" for d in ctx.synthetic_configs if (d / f"{name}.json").is_file()]
    if not found:
        names = synthetic_config_names(ctx)
        raise SourceError(
            f"model {model!r}: no synthetic config {name!r}{did_you_mean(name, names)}; "
            f"available: {known(names)}"
        )
    try:
        config = json.loads(found[0].read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise SourceError(
            f"model {model!r}: synthetic config {str(found[0])!r} is not JSON: {e}"
        ) from None
    path = random_init_replica(config, seed=SYNTHETIC_SEED, cache_dir=ctx.cache_dir, label=model)
    return ResolvedSource(model, source, "synthetic", path, True)


def _package(model: str, source: str) -> Path:
    spec_text = source.removeprefix("package:")
    module, _, sub = spec_text.partition("/")
    found = importlib.util.find_spec(module) if module.isidentifier() else None
    if found is None or not found.submodule_search_locations:
        raise SourceError(
            f"model {model!r}: source {source!r}: Python package {module!r} is not installed "
            f"(pip install {module.replace('_', '-')})"
        )
    path = Path(next(iter(found.submodule_search_locations))) / sub
    if not path.is_dir():
        raise SourceError(
            f"model {model!r}: source {source!r}: package {module!r} has no folder {sub!r}"
        )
    return path


_WEIGHT_PATTERNS = ["config.json", "*.safetensors", "model.safetensors.index.json"]


def _hub(model: str, repo_id: str, ctx: SourceContext) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(repo_id, allow_patterns=_WEIGHT_PATTERNS, local_files_only=True)
        )
    except Exception:
        pass
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    reason = "HF_HUB_OFFLINE is set"
    if not offline:
        try:
            return Path(snapshot_download(repo_id, allow_patterns=_WEIGHT_PATTERNS))
        except Exception as e:
            reason = f"the hub is unreachable or refused ({type(e).__name__})"
    fix = (
        f"use the random-init replica {ctx.replica_hint!r} (--model {ctx.replica_hint})"
        if ctx.replica_hint
        else "point --model at a local folder with config.json and *.safetensors"
    )
    raise SourceError(
        f"model {model!r}: hub id {repo_id!r} is not in the Hugging Face cache and {reason}; "
        f"download it once with network access, or {fix}"
    )
