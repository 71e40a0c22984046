"""GGUF files written as llama.cpp's converter writes them read back as the original tensors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from terrain.anatomy import build_anatomy
from terrain.gguf import GGUFCheckpoint, build_gguf_module, is_gguf, load_gguf_tokenizer
from terrain.gguf.export import write_gguf
from terrain.gguf.rope_layout import permute_rows, unpermute_rows
from tests.unit.gguf_helpers import (
    CONFIGS,
    VOCAB,
    input_ids,
    saved_tensors,
    tiny_model,
    write_tiny,
)

FAMILIES = ("llama", "qwen3", "qwen2")


@pytest.fixture(scope="module", params=FAMILIES)
def written(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    family: str = request.param
    model, file = write_tiny(family, tmp_path_factory.mktemp(f"gguf-{family}"))
    return family, model, file


def test_converter_permutation_interleaves_the_two_halves_of_each_head() -> None:
    rows = torch.arange(16.0).reshape(16, 1)
    # 2 heads of 8 rows: row i of a head's first half goes to 2i, row i of its second to 2i+1
    assert permute_rows(rows, 2).flatten().tolist() == [
        0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15,
    ]  # fmt: skip
    assert torch.equal(unpermute_rows(permute_rows(rows, 2), 2), rows)
    # the head count matters: undone with the wrong one, the rows stay mixed up
    assert not torch.equal(unpermute_rows(permute_rows(rows, 2), 4), rows)


def test_permutation_refuses_rows_that_are_not_whole_rotary_pairs() -> None:
    with pytest.raises(ValueError, match="6 rows cannot be split into 2 heads of rotary pairs"):
        unpermute_rows(torch.zeros(6, 3), 2)


def test_every_tensor_reads_back_exactly_under_its_hugging_face_name(written: Any) -> None:
    family, model, file = written
    ckpt = GGUFCheckpoint(file, name=family)
    ckpt.validate()
    original = saved_tensors(model)
    assert ckpt.tensor_names() == sorted(original)
    assert dict(ckpt.unmapped) == {}
    for name, expected in original.items():
        assert ckpt.tensor_shapes()[name] == tuple(expected.shape), name
        got = ckpt.tensor(name)
        assert got.dtype == torch.float32
        assert torch.equal(got, expected), name
        assert ckpt.tensor_quantization(name) == "F32"
    assert ckpt.quantization_census() == {"F32": len(original)}


def test_llama_q_and_k_are_stored_permuted_and_read_unpermuted(tmp_path: Path) -> None:
    """The reading above could pass by never permuting at all; the stored rows prove it does."""
    import gguf

    model, file = write_tiny("llama", tmp_path)
    stored = {t.name: t for t in gguf.GGUFReader(file).tensors}
    q = torch.from_numpy(stored["blk.0.attn_q.weight"].data.copy())
    k_bias = torch.from_numpy(stored["blk.0.attn_k.bias"].data.copy())
    attn = model.model.layers[0].self_attn
    assert not torch.equal(q, attn.q_proj.weight)
    assert torch.equal(q, permute_rows(attn.q_proj.weight.detach(), 4))
    assert torch.equal(k_bias, permute_rows(attn.k_proj.bias.detach(), 2))
    ckpt = GGUFCheckpoint(tmp_path, name="m")
    assert torch.equal(ckpt.tensor("model.layers.0.self_attn.k_proj.bias"), attn.k_proj.bias)


def test_config_is_rebuilt_from_the_metadata(written: Any) -> None:
    family, _model, file = written
    config = GGUFCheckpoint(file, name=family).config
    original = CONFIGS[family]
    same = (
        "model_type",
        "architectures",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "vocab_size",
        "max_position_embeddings",
        "rms_norm_eps",
        "rope_parameters",
        "tie_word_embeddings",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
    )
    assert {k: config[k] for k in same} == {k: original[k] for k in same}
    assert config["head_dim"] == original.get("head_dim", 32 // 4)
    if family == "llama":
        assert (config["attention_bias"], config["mlp_bias"]) == (True, False)


def test_config_builds_the_same_transformers_config(written: Any) -> None:
    import transformers

    family, model, file = written
    rebuilt = transformers.AutoConfig.for_model(**GGUFCheckpoint(file, name=family).config)
    for key in ("hidden_size", "num_key_value_heads", "rope_parameters", "vocab_size"):
        assert getattr(rebuilt, key) == getattr(model.config, key), key
    # Qwen2Config has no head_dim field; its attention takes hidden // heads, as stated here
    per_head = model.config.hidden_size // model.config.num_attention_heads
    assert rebuilt.head_dim == getattr(model.config, "head_dim", per_head)


def test_anatomy_maps_every_tensor(written: Any) -> None:
    family, _model, file = written
    ckpt = GGUFCheckpoint(file, name=family)
    # qwen2 has no adapter of its own: it is the Llama layout (biases included)
    anatomy = build_anatomy(ckpt, ckpt.config, "llama" if family == "qwen2" else None)
    census = anatomy.census()
    assert census["tensors"] == census["claimed"] == len(ckpt.tensor_names())
    assert census["unclaimed"] == {}
    if family == "qwen3":
        assert census["by_role"]["decoder.q_norm.weight"]["tensors"] == 2
    q = anatomy.layers("decoder", "q")[1]
    assert torch.equal(anatomy.read(q), ckpt.tensor("model.layers.1.self_attn.q_proj.weight"))


def test_transformers_module_from_the_file_computes_the_original_logits(written: Any) -> None:
    family, model, file = written
    built = build_gguf_module(GGUFCheckpoint(file, name=family), dtype="float32", device="cpu")
    assert type(built).__name__ == CONFIGS[family]["architectures"][0]
    ids = input_ids()
    with torch.no_grad():
        expected = model(ids).logits
        got = built(ids).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_tokenizer_comes_from_the_metadata(written: Any) -> None:
    family, _model, file = written
    tokenizer = load_gguf_tokenizer(GGUFCheckpoint(file, name=family))
    assert len(tokenizer) == len(VOCAB.tokens)
    ids = tokenizer("the fox")["input_ids"]
    assert tokenizer.decode(ids) == "the fox"
    assert VOCAB.tokens.index("the") in ids  # a learned merge, not bytes only
    assert tokenizer.eos_token == "<|im_end|>"


def test_a_folder_holding_one_file_is_the_file(written: Any) -> None:
    family, _model, file = written
    by_folder = GGUFCheckpoint(file.parent, name=family)
    assert by_folder.file == file
    assert by_folder.path == file.parent
    assert is_gguf(file)
    assert is_gguf(file.parent)
    assert by_folder.fingerprint == GGUFCheckpoint(file, name="other").fingerprint


def test_fingerprint_follows_the_bytes(tmp_path: Path) -> None:
    _model, first = write_tiny("llama", tmp_path / "a", seed=0)
    _model, second = write_tiny("llama", tmp_path / "b", seed=1)
    assert (
        GGUFCheckpoint(first, name="a").fingerprint != GGUFCheckpoint(second, name="b").fingerprint
    )


def test_other_dtypes_are_converted_after_dequantization(written: Any) -> None:
    family, model, file = written
    name = "model.layers.0.mlp.down_proj.weight"
    got = GGUFCheckpoint(file, name=family).tensor(name, torch.float64)
    assert got.dtype == torch.float64
    assert torch.equal(got, saved_tensors(model)[name].double())


def test_tensors_without_a_transformers_name_are_listed_with_a_reason(tmp_path: Path) -> None:
    import dataclasses

    model = tiny_model("llama")
    extra = {
        "rope_freqs.weight": np.ones(4, np.float32),
        "blk.0.odd.weight": np.ones(3, np.float32),
    }
    file = write_gguf(
        tmp_path / "x.gguf", CONFIGS["llama"], saved_tensors(model), extra_tensors=extra
    )
    ckpt = GGUFCheckpoint(file, name="m")
    assert set(ckpt.unmapped) == set(extra)
    assert "Llama 3 rope scaling" in ckpt.unmapped["rope_freqs.weight"]
    assert "no transformers counterpart" in ckpt.unmapped["blk.0.odd.weight"]
    assert ckpt.tensor_names() == sorted(saved_tensors(model))  # never exposed under a guess
    assert ckpt.quantization_census() == {"F32": len(saved_tensors(model)) + 2}
    # How the reasons join the anatomy's unclaimed list (Anatomy is frozen; its role index
    # must start empty, or __post_init__ files every role twice):
    anatomy = build_anatomy(ckpt, ckpt.config)
    joined = dataclasses.replace(
        anatomy, unclaimed={**anatomy.unclaimed, **ckpt.unmapped}, _by_role={}
    )
    assert joined.census()["unclaimed"] == dict(sorted(ckpt.unmapped.items()))
    assert joined.layers("decoder", "q") == anatomy.layers("decoder", "q")


@pytest.mark.parametrize(
    "rope",
    [
        {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0},
        {
            "rope_type": "yarn",
            "rope_theta": 10000.0,
            "factor": 4.0,
            "original_max_position_embeddings": 16,
        },
    ],
    ids=["linear", "yarn"],
)
def test_rope_scaling_round_trips_into_the_config_and_the_forward(
    tmp_path: Path, rope: dict[str, Any]
) -> None:
    import transformers

    config = {**CONFIGS["llama"], "rope_parameters": rope}
    hf_config = transformers.AutoConfig.for_model(**config)
    torch.manual_seed(0)
    llama: Any = transformers.LlamaForCausalLM  # its config argument is typed LlamaConfig
    model = llama(hf_config).eval()
    file = write_gguf(tmp_path / "rope.gguf", config, saved_tensors(model), vocabulary=VOCAB)
    ckpt = GGUFCheckpoint(file, name="m")
    assert ckpt.config["rope_parameters"] == rope
    built = build_gguf_module(ckpt, dtype="float32", device="cpu")
    ids = input_ids()
    with torch.no_grad():
        torch.testing.assert_close(built(ids).logits, model(ids).logits, rtol=0, atol=1e-5)
