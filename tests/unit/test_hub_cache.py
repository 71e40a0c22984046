"""A hub id whose files sit in a Hugging Face cache resolves offline, sharded weights and all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from terrain.checkpoint import Checkpoint
from terrain.errors import SourceError
from terrain.sources import SourceContext, resolve

REVISION = "0123456789abcdef0123456789abcdef01234567"


def _use_cache(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Point huggingface_hub at ``root``: it reads HF_HUB_CACHE once, at import, so the
    environment variable alone misses whenever another test imported it first."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _cache(root: Path, repo: str) -> Path:
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<rev>/}."""
    folder = root / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(REVISION)
    shards = {
        "model-00001-of-00002.safetensors": {"a": torch.zeros(4, 4)},
        "model-00002-of-00002.safetensors": {"b": torch.ones(3)},
    }
    weight_map = {}
    for file, tensors in shards.items():
        save_file(tensors, str(snapshot / file))
        weight_map.update(dict.fromkeys(tensors, file))
    (snapshot / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (snapshot / "config.json").write_text(json.dumps({"model_type": "bert"}))
    return snapshot


def test_a_cached_sharded_hub_id_resolves_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = _cache(tmp_path, "org/big-model")
    _use_cache(monkeypatch, tmp_path)
    ctx = SourceContext((), tmp_path / "terrain-cache")
    source = resolve("big", "org/big-model", ctx)
    assert source.kind == "hub"
    assert source.path.resolve() == snapshot.resolve()
    assert not source.random_init
    ckpt = Checkpoint(source.path, name="big")
    assert ckpt.shards.indexed
    assert ckpt.tensor_shapes() == {"a": (4, 4), "b": (3,)}
    assert torch.equal(ckpt.tensor("b"), torch.ones(3))


def test_an_uncached_hub_id_offline_fails_naming_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_cache(monkeypatch, tmp_path)
    ctx = SourceContext((), tmp_path / "terrain-cache", replica_hint="big-random")
    with pytest.raises(
        SourceError, match=r"not in the Hugging Face cache and HF_HUB_OFFLINE is set"
    ):
        resolve("big", "org/absent", ctx)
