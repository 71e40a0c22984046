"""Family adapters: every tensor claimed or deliberately unclaimed, counts and shapes from config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from terrain.anatomy import build_anatomy
from terrain.checkpoint import Checkpoint
from terrain.errors import AnatomyError


def open_anatomy(path: Path, family: str | None = None):  # type: ignore[no-untyped-def]
    ckpt = Checkpoint(path, name=path.name)
    return build_anatomy(ckpt, ckpt.config, family)


def test_bert_census_claims_every_tensor(tiny_bert: Path) -> None:
    anatomy = open_anatomy(tiny_bert)
    census = anatomy.census()
    assert census["family"] == "bert"
    assert census["claimed"] + len(census["unclaimed"]) == census["tensors"]
    config = json.loads((tiny_bert / "config.json").read_text())
    n_layers = config["num_hidden_layers"]
    for role in ("q", "k", "v", "o", "mlp_up", "mlp_down", "norm_attn", "norm_mlp"):
        assert [r.layer for r in anatomy.layers("encoder", role)] == list(range(n_layers)), role
    assert anatomy.token_embedding().tensor == "embeddings.word_embeddings.weight"
    # Parameter count of the census equals the tensors' total.
    total = sum(torch.Size(s).numel() for s in anatomy.source.tensor_shapes().values())
    assert census["parameters"] == total


def test_t5_census_finds_encoder_decoder_cross_attention_and_position_bias(tiny_t5: Path) -> None:
    anatomy = open_anatomy(tiny_t5)
    census = anatomy.census()
    config = json.loads((tiny_t5 / "config.json").read_text())
    assert census["unclaimed"] == {}
    assert census["claimed"] == census["tensors"]
    assert census["layers"] == {
        "encoder": config["num_layers"],
        "decoder": config["num_decoder_layers"],
    }
    assert len(anatomy.layers("decoder", "xq")) == config["num_decoder_layers"]
    assert anatomy.layers("encoder", "xq") == []
    bias = anatomy.find("position_bias")
    assert {(r.stack, r.layer) for r in bias} == {("encoder", 0), ("decoder", 0)}
    assert anatomy.token_embedding().tensor == "shared.weight"


def _write(path: Path, tensors: dict[str, torch.Tensor], config: dict[str, object]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_unknown_tensor_is_named(bert_copy: Path) -> None:
    ckpt = Checkpoint(bert_copy, name="b")
    tensors = {n: ckpt.tensor(n) for n in ckpt.tensor_names()}
    tensors["encoder.layer.0.attention.self.rotary.weight"] = torch.zeros(2)
    _write(bert_copy, tensors, ckpt.config)
    with pytest.raises(
        AnatomyError,
        match=r"cannot place tensor\(s\) 'encoder\.layer\.0\.attention\.self\.rotary\.weight'",
    ):
        open_anatomy(bert_copy)


def test_shape_disagreeing_with_config_is_named(bert_copy: Path) -> None:
    ckpt = Checkpoint(bert_copy, name="b")
    tensors = {n: ckpt.tensor(n) for n in ckpt.tensor_names()}
    tensors["encoder.layer.1.attention.self.key.weight"] = torch.zeros(3, 64)
    _write(bert_copy, tensors, ckpt.config)
    with pytest.raises(
        AnatomyError,
        match=r"'encoder\.layer\.1\.attention\.self\.key\.weight' has shape \[3, 64\], expected \[64, 64\]",
    ):
        open_anatomy(bert_copy)


def test_missing_layer_is_reported(bert_copy: Path) -> None:
    ckpt = Checkpoint(bert_copy, name="b")
    tensors = {n: ckpt.tensor(n) for n in ckpt.tensor_names() if ".layer.2." not in n}
    _write(bert_copy, tensors, ckpt.config)
    with pytest.raises(
        AnatomyError, match=r"encoder role 'q' found in layers \[0, 1\], the config says 3"
    ):
        open_anatomy(bert_copy)


def test_unknown_architecture_names_model_type(tmp_path: Path) -> None:
    path = _write(tmp_path / "m", {"w": torch.zeros(2)}, {"model_type": "mamba9"})
    with pytest.raises(
        AnatomyError, match=r"unknown architecture: config.json model_type 'mamba9'"
    ):
        open_anatomy(path)


def test_wrong_family_override_is_explicit(tiny_t5: Path) -> None:
    with pytest.raises(AnatomyError, match="the bert adapter cannot place"):
        open_anatomy(tiny_t5, family="bert")


def test_bad_config_field_is_named(bert_copy: Path) -> None:
    config = json.loads((bert_copy / "config.json").read_text())
    config["hidden_size"] = "big"
    (bert_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        AnatomyError, match=r"config.json field 'hidden_size' must be a positive integer, got 'big'"
    ):
        open_anatomy(bert_copy)
