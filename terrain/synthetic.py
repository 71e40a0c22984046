"""Seeded random-init replicas of real transformers configs, built once and cached as safetensors.

A replica is the null model of the research: same architecture and shapes, the family's
own initialisation, no training. Its folder carries `terrain_synthetic.json` so that it is
labelled "random init" wherever it appears.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from terrain.architecture import PROVENANCE_KEYS, check_config_fields, model_class
from terrain.atomic import build_folder
from terrain.errors import CheckpointError, SourceError
from terrain.family import named_layout

PROVENANCE_FILE = "terrain_synthetic.json"
# Bump when the way replicas are built changes, so that old caches are not reused.
FORMAT_VERSION = 1

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    env = os.environ.get("TERRAIN_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "terrain"


def replica_key(config: Mapping[str, Any], seed: int) -> str:
    import torch
    import transformers

    canonical = {k: v for k, v in config.items() if k not in PROVENANCE_KEYS}
    payload = json.dumps(
        {
            "config": canonical,
            "seed": seed,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "format": FORMAT_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def is_random_init(path: Path) -> bool:
    return (path / PROVENANCE_FILE).is_file()


def random_init_replica(
    config: Mapping[str, Any], *, seed: int, cache_dir: Path, label: str
) -> Path:
    """The folder of a seeded random-init model of `config`, building it on first use.

    Safe under xdist: a file lock serialises builders and the folder appears atomically
    (terrain.atomic.build_folder).
    """
    key = replica_key(config, seed)
    # model_type names the folder (and its lock file): a plain name only, never a path
    # that the config chooses ("../x" would land outside the cache).
    try:
        check_config_fields(f"synthetic model {label!r}: config", config)
    except CheckpointError as e:
        raise SourceError(str(e)) from None
    model_type = str(config.get("model_type", "model"))
    target = cache_dir / "synthetic" / f"{model_type}-{key}"

    def build(tmp: Path) -> None:
        log.warning("terrain: building random-init replica %r (seed %d) in %s", label, seed, target)
        _build(config, seed, tmp, label)

    return build_folder(target, is_random_init, build)


def _build(config: Mapping[str, Any], seed: int, out: Path, label: str) -> None:
    import torch
    import transformers

    clean = {k: v for k, v in config.items() if k not in PROVENANCE_KEYS}
    model_type = clean.pop("model_type", None)
    if not isinstance(model_type, str):
        raise SourceError(f"synthetic model {label!r}: config has no 'model_type'")
    layout = named_layout(config)
    if layout is not None:  # not a transformers model: tensors written by name
        from terrain.errors import AnatomyError

        try:
            layout.write_random_init({"model_type": model_type, **clean}, seed, out, label)
        except AnatomyError as e:
            raise SourceError(f"synthetic model {label!r}: {e}") from None
    else:
        try:
            hf_config = transformers.AutoConfig.for_model(model_type, **clean)
        except (ValueError, KeyError) as e:
            raise SourceError(
                f"synthetic model {label!r}: transformers cannot build config: {e}"
            ) from None
        cls = model_class(f"synthetic model {label!r}: config", clean)
        torch.manual_seed(seed)
        with torch.device("cpu"):
            build = cls if cls is not None else transformers.AutoModel.from_config
            model = build(hf_config)
        model.save_pretrained(out)
    provenance = {
        "random_init": True,
        "label": label,
        "seed": seed,
        "format": FORMAT_VERSION,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    (out / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2), encoding="utf-8")
