"""Checkpoint reading: bad files fail with the model, file and tensor named."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from terrain.checkpoint import Checkpoint
from terrain.errors import CheckpointError


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(
        CheckpointError, match=r"model 'm': checkpoint directory .*nope.* does not exist"
    ):
        Checkpoint(tmp_path / "nope", name="m")


def test_directory_without_weights(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"model 'm': no \*\.safetensors weights in"):
        Checkpoint(tmp_path, name="m").validate()


def test_pickled_weights_are_refused_with_a_hint(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(CheckpointError, match=r"found \['pytorch_model\.bin'\] \(pickle\)"):
        Checkpoint(tmp_path, name="m").validate()


def test_missing_config(tmp_path: Path) -> None:
    save_file({"w": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"model 'm': no config\.json"):
        Checkpoint(tmp_path, name="m").validate()


@pytest.mark.parametrize("keep", [0.5, 0.999], ids=["half", "last-bytes"])
def test_truncated_safetensors(bert_copy: Path, keep: float) -> None:
    file = bert_copy / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(
        CheckpointError, match=r"model 'm': .*model\.safetensors.* not a readable safetensors file"
    ):
        Checkpoint(bert_copy, name="m").validate()


def test_nan_tensor_is_named(tmp_path: Path) -> None:
    bad = torch.ones(4, 4)
    bad[1, 2] = math.nan
    bad[3, 3] = math.inf
    save_file({"good": torch.ones(2), "bad": bad}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text("{}")
    ckpt = Checkpoint(tmp_path, name="m")
    assert torch.equal(ckpt.tensor("good"), torch.ones(2))
    with pytest.raises(
        CheckpointError,
        match=r"tensor 'bad' in 'model.safetensors' has 2 of 16 values that are NaN or Inf",
    ):
        ckpt.tensor("bad")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_one_non_finite_value_in_a_large_tensor_is_found(tmp_path: Path, bad: float) -> None:
    values = torch.randn(512, 512)
    values[511, 0] = bad
    save_file({"w": values}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"tensor 'w' .* has 1 of 262144 values"):
        Checkpoint(tmp_path, name="m").tensor("w")


def test_finite_values_whose_sum_overflows_are_accepted(tmp_path: Path) -> None:
    # float16 sums overflow above 65504: the quick check must fall back to the exact one.
    big = torch.full((8,), 60000.0, dtype=torch.float16)
    save_file({"w": big}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text("{}")
    read = Checkpoint(tmp_path, name="m").tensor("w", torch.float16)
    assert not bool(torch.isfinite(read.sum()))
    assert torch.equal(read, big)


def test_sharded_checkpoint_reads_through_the_index(tmp_path: Path) -> None:
    save_file({"a": torch.zeros(2)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({"b": torch.ones(3)}, str(tmp_path / "model-00002-of-00002.safetensors"))
    index = {
        "weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00002-of-00002.safetensors",
        }
    }
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "config.json").write_text("{}")
    ckpt = Checkpoint(tmp_path, name="m")
    assert ckpt.tensor_shapes() == {"a": (2,), "b": (3,)}
    assert torch.equal(ckpt.tensor("b"), torch.ones(3))


def test_fingerprint_follows_content(bert_copy: Path, tiny_bert: Path) -> None:
    original = Checkpoint(tiny_bert, name="a").fingerprint
    assert Checkpoint(bert_copy, name="b").fingerprint == original
    ckpt = Checkpoint(bert_copy, name="b")
    tensors = {n: ckpt.tensor(n) for n in ckpt.tensor_names()}
    tensors["embeddings.word_embeddings.weight"][0, 0] += 1.0
    save_file(tensors, str(bert_copy / "model.safetensors"))
    assert Checkpoint(bert_copy, name="b").fingerprint != original


def test_unknown_tensor_name(tiny_bert: Path) -> None:
    with pytest.raises(CheckpointError, match="model 'm': no tensor 'nope'"):
        Checkpoint(tiny_bert, name="m").tensor("nope")


def test_module_with_a_nan_parameter_is_refused_naming_it(bert_copy: Path) -> None:
    from safetensors.torch import load_file

    from terrain.modules import build_module

    tensors = load_file(str(bert_copy / "model.safetensors"))
    tensors["encoder.layer.0.output.dense.weight"][0, 0] = math.nan
    save_file(tensors, str(bert_copy / "model.safetensors"))
    with pytest.raises(
        CheckpointError,
        match=r"module parameter '.*encoder\.layer\.0\.output\.dense\.weight' has 1 of",
    ):
        build_module(
            Checkpoint(bert_copy, name="m"), dtype="float32", device="cpu", trust_remote_code=False
        )
