"""A table of broken and hostile checkpoint folders: each is refused for its own model
with one line naming the model and what is wrong where (file, field, tensor), within a
second, without reading outside the folder, unpickling, or importing the folder's code."""

from __future__ import annotations

import contextlib
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from terrain.checkpoint import Checkpoint
from terrain.config import ModelSpec
from terrain.errors import TerrainError
from terrain.model import LoadedModel, open_model
from terrain.sources import ResolvedSource

from . import bad_checkpoints as bad

# (row id, builder, fragments the one-line message must hold)
ROWS: list[tuple[str, bad.Builder, tuple[str, ...]]] = [
    ("int8 Q weight", bad.with_q(lambda q: (q * 100).to(torch.int8)), ("query.weight", "I8")),
    ("bool Q weight", bad.with_q(lambda q: q > 0), ("query.weight", "BOOL")),
    ("index: absolute path outside", bad.sharded(bad.index_absolute), ("outside the checkpoint",)),
    ("index: ../ path", bad.sharded(bad.index_dotdot), ("outside the checkpoint",)),
    ("index: tensor named twice", bad.sharded(bad.index_twice), ("twice", "weight_map")),
    ("index: shard lacks tensor", bad.sharded(bad.index_lacks), ("'extra.weight'", "a.safetensors")),
    ("index: weight_map a list", bad.sharded(bad.index_list), ("weight_map",)),
    ("index: missing shard", bad.sharded(bad.index_plain, shards="a"), ("'b.safetensors'", "not exist")),
    ("shard: symlink leaving folder", bad.shard_symlink_out, ("b.safetensors", "symbolic link")),
    ("config: FIFO", bad.config_special("fifo"), ("config.json", "not a regular file")),
    ("config: symlink to /dev/zero", bad.config_special("devzero"), ("config.json", "symbolic link")),
    ("config: symlink out", bad.config_special("out"), ("config.json", "symbolic link")),
    ("weights: FIFO", bad.weights_special("fifo"), ("model.safetensors", "not a regular file")),
    ("weights: /dev/zero", bad.weights_special("devzero"), ("model.safetensors", "symbolic link")),
    ("header: length", bad.lying_header("length"), ("model.safetensors", "header claims")),
    ("header: offsets", bad.lying_header("offsets"), ("model.safetensors", "offset")),
    ("header: dtype", bad.lying_header("dtype"), ("model.safetensors", "Q4")),
    ("header: shape", bad.lying_header("shape"), ("model.safetensors", "shape")),
    ("config: model_type ../", bad.config_of({"model_type": "../../x"}), ("'model_type'", "../../x")),
    ("config: architectures int", bad.config_of({"architectures": 5}), ("'architectures'", "5")),
    ("config: architectures pipeline", bad.config_of({"architectures": ["pipeline"]}), ("'pipeline'", "not a model class")),
    ("config: architectures unknown", bad.config_of({"architectures": ["NoSuchModel"]}), ("'NoSuchModel'",)),
    ("config: hidden_size contradicts", bad.config_of({"hidden_size": 128}), ("shape", "expected")),
    ("config: layers contradict", bad.config_of({"num_hidden_layers": 6}), ("layers", "6")),
    ("config: heads a string", bad.config_of({"num_attention_heads": "four"}), ("num_attention_heads",)),
    ("pickle-only folder", bad.pickle_only, ("pytorch_model.bin", "does not unpickle")),
    ("auto_map code, no trust", bad.auto_map_code, ("'EvilModel'", "not a model class")),
]  # fmt: skip


@pytest.fixture
def good(tiny_bert: Path) -> tuple[bad.Tensors, dict[str, Any]]:
    import json

    return load_file(tiny_bert / "model.safetensors"), json.loads(
        (tiny_bert / "config.json").read_text()
    )


@pytest.fixture
def deadline() -> Iterator[None]:
    """A FIFO that were opened would block forever: fail the row after 20 s instead."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError("the checkpoint was not refused within 20 s")

    before = signal.signal(signal.SIGALRM, expired)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, before)


def _open(folder: Path, trust: bool = False) -> LoadedModel:
    spec = ModelSpec(name="bad-model", source=str(folder), trust_remote_code=trust)
    source = ResolvedSource("bad-model", str(folder), "local", folder, False)
    return open_model(spec, source, device="cpu", cache_dir=folder.parent / "cache")


@pytest.mark.parametrize(("row", "build", "fragments"), ROWS, ids=[r[0] for r in ROWS])
def test_bad_checkpoint_is_refused_in_one_line(
    row: str,
    build: bad.Builder,
    fragments: tuple[str, ...],
    good: tuple[bad.Tensors, dict[str, Any]],
    tmp_path: Path,
    deadline: None,
) -> None:
    folder, outside = tmp_path / "ckpt", tmp_path / "outside"
    outside.mkdir()
    build(*good, folder, outside)
    with pytest.raises(TerrainError) as caught:
        _open(folder)
    message = str(caught.value)
    assert "\n" not in message, message
    assert len(message) < 600, message
    assert "'bad-model'" in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert not (outside / "UNPICKLED").exists()
    assert not (outside / "IMPORTED").exists()


def test_float8_weights_are_upcast_exactly_and_the_census_says_so(
    good: tuple[bad.Tensors, dict[str, Any]], tmp_path: Path
) -> None:
    folder = tmp_path / "ckpt"
    bad.with_q(lambda q: q.to(torch.float8_e4m3fn))(*good, folder, tmp_path)
    model = _open(folder)
    census = model.dtype_census()
    assert census == {"F32": len(good[0]) - 1, "F8_E4M3 (upcast exactly to float32)": 1}
    q = bad.q_name(good[0])
    stored = good[0][q].to(torch.float8_e4m3fn)
    assert torch.equal(model.checkpoint.tensor(q), stored.to(torch.float32))


def test_a_model_type_with_a_path_creates_nothing_outside_the_cache(tmp_path: Path) -> None:
    from terrain.synthetic import random_init_replica

    cache = tmp_path / "a" / "b" / "cache"
    with pytest.raises(TerrainError, match="model_type"):
        random_init_replica(
            {"model_type": "../../../escaped", "architectures": ["BertModel"]},
            seed=0,
            cache_dir=cache,
            label="evil",
        )
    made = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert all(p == "a" or p.startswith("a/b") for p in made), made
    assert not any("escaped" in p for p in made), made


def test_remote_code_is_not_imported_even_when_a_module_is_built(
    good: tuple[bad.Tensors, dict[str, Any]], tmp_path: Path
) -> None:
    """Past the class check (no `architectures`), transformers is still told not to trust
    the folder's code: building the module fails without importing it."""
    from terrain.modules import build_module

    folder, outside = tmp_path / "ckpt", tmp_path / "outside"
    outside.mkdir()
    bad.auto_map_code(*good, folder, outside)
    config = (
        (folder / "config.json").read_text().replace('"architectures": ["EvilModel"]', '"x": 1')
    )
    (folder / "config.json").write_text(config)
    model = _open(folder)
    assert isinstance(model.checkpoint, Checkpoint)
    with contextlib.suppress(TerrainError):
        build_module(model.checkpoint, dtype="float32", device="cpu", trust_remote_code=False)
    assert not (outside / "IMPORTED").exists()
    shutil.rmtree(folder)
