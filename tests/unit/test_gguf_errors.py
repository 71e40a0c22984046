"""Broken GGUF files fail with one CheckpointError line naming the file, the tensor, the type."""

from __future__ import annotations

import math
import re
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from terrain.errors import CheckpointError
from terrain.gguf import GGUFCheckpoint, build_gguf_module, load_gguf_tokenizer
from terrain.gguf.export import write_gguf, write_metadata
from terrain.gguf.names import ARCHITECTURES
from tests.unit.gguf_helpers import CONFIGS, saved_tensors, tiny_model, write_tiny


def failure(call: object, pattern: str) -> str:
    """Run `call`, expect one CheckpointError line matching `pattern`, return the message."""
    __tracebackhide__ = True
    assert callable(call)
    with pytest.raises(CheckpointError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message, message
    assert re.search(pattern, message), f"{message!r} does not match {pattern!r}"
    return message


def last_tensor(file: Path) -> gguf.ReaderTensor:
    return max(gguf.GGUFReader(file).tensors, key=lambda t: t.data_offset)


def write_raw(
    file: Path, arch: str, tensors: dict[str, tuple[np.ndarray, gguf.GGMLQuantizationType]]
) -> Path:
    """A file with the tiny Llama's metadata under `arch`, holding raw (bytes, type) tensors."""
    writer = gguf.GGUFWriter(file, arch)
    layout = ARCHITECTURES.get(arch, ARCHITECTURES["llama"])
    write_metadata(writer, layout, CONFIGS["llama"], "F32", "broken")
    for name, (data, qtype) in tensors.items():
        raw = None if qtype == gguf.GGMLQuantizationType.F32 else qtype
        writer.add_tensor(name, data, raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return file


@pytest.mark.parametrize("quantization", ["F32", "Q4_1"])
def test_file_truncated_in_tensor_data_names_the_tensor_and_type(
    tmp_path: Path, quantization: str
) -> None:
    _model, file = write_tiny("llama", tmp_path, quantization=quantization)
    victim = last_tensor(file)
    data = file.read_bytes()
    file.write_bytes(data[:-10])
    stored_type = victim.tensor_type.name
    assert stored_type == ("F32" if victim.data.ndim < 2 else quantization)
    failure(
        lambda: GGUFCheckpoint(file, name="m").validate(),
        rf"^model 'm': GGUF file '.*{re.escape(file.name)}': tensor '{re.escape(victim.name)}' "
        rf"\({stored_type}\) needs bytes up to {len(data)} but the file has {len(data) - 10} "
        r"\(truncated\)$",
    )


@pytest.mark.parametrize("keep", [6, 100, 2000], ids=["in-magic", "in-header", "in-metadata"])
def test_file_truncated_in_its_header_names_the_file(tmp_path: Path, keep: int) -> None:
    _model, file = write_tiny("llama", tmp_path)
    file.write_bytes(file.read_bytes()[:keep])
    failure(
        lambda: GGUFCheckpoint(file, name="m").validate(),
        rf"^model 'm': '.*{re.escape(file.name)}' is not a readable GGUF file "
        r"\(truncated or corrupt\?\): ",
    )


def test_not_a_gguf_file(tmp_path: Path) -> None:
    file = tmp_path / "model.gguf"
    file.write_bytes(b"PK\x03\x04 a zip, not a model" * 4)
    failure(lambda: GGUFCheckpoint(file, name="m").validate(), r"not a readable GGUF file .*magic")


def test_unknown_architecture_names_file_and_architecture(tmp_path: Path) -> None:
    file = write_raw(
        tmp_path / "mamba.gguf",
        "mamba",
        {"token_embd.weight": (np.ones((4, 32), np.float32), gguf.GGMLQuantizationType.F32)},
    )
    ckpt = GGUFCheckpoint(file, name="m")
    pattern = (
        r"^model 'm': GGUF file '.*mamba\.gguf': architecture 'mamba' is not supported "
        r"\(terrain reads llama, qwen2, qwen3\)$"
    )
    failure(ckpt.validate, pattern)
    failure(ckpt.tensor_names, pattern)


def test_type_gguf_cannot_dequantize_names_file_tensor_and_type(tmp_path: Path) -> None:
    q8_1 = gguf.GGMLQuantizationType.Q8_1  # sizes known to gguf, dequantization not
    _block, type_size = gguf.GGML_QUANT_SIZES[q8_1]
    file = write_raw(
        tmp_path / "q8_1.gguf",
        "llama",
        {"token_embd.weight": (np.zeros((272, type_size), np.uint8), q8_1)},
    )
    pattern = (
        r"^model 'm': GGUF file 'q8_1\.gguf': tensor 'token_embd\.weight' is stored as Q8_1, "
        r"which gguf [\d.]+ cannot dequantize$"
    )
    failure(GGUFCheckpoint(file, name="m").validate, pattern)
    failure(lambda: GGUFCheckpoint(file, name="m").tensor("model.embed_tokens.weight"), pattern)


def test_type_id_unknown_to_gguf_names_the_tensor(tmp_path: Path) -> None:
    file = write_raw(
        tmp_path / "odd.gguf",
        "llama",
        {"token_embd.weight": (np.ones((272, 32), np.float32), gguf.GGMLQuantizationType.F32)},
    )
    editor = gguf.GGUFReader(file, "r+")  # gguf's own way to patch a header in place
    editor.tensors[0].field.parts[4][0] = 250
    editor.data.flush()
    del editor
    failure(
        lambda: GGUFCheckpoint(file, name="m").validate(),
        r"^model 'm': GGUF file '.*odd\.gguf': tensor 'token_embd\.weight' \(type id 250\) "
        r"unknown to gguf$",
    )


def test_nan_in_a_dequantized_tensor_reads_like_checkpoint_tensor(tmp_path: Path) -> None:
    model = tiny_model("llama")
    tensors = saved_tensors(model)
    tensors["model.layers.1.self_attn.q_proj.weight"][3, 5] = math.nan
    tensors["model.layers.1.self_attn.q_proj.weight"][7, 0] = math.inf
    file = write_gguf(tmp_path / "nan.gguf", CONFIGS["llama"], tensors)
    ckpt = GGUFCheckpoint(file, name="m")
    ckpt.validate()  # values are read on demand only
    assert torch.isfinite(ckpt.tensor("model.layers.0.self_attn.q_proj.weight")).all()
    failure(
        lambda: ckpt.tensor("model.layers.1.self_attn.q_proj.weight"),
        r"^model 'm': tensor 'model\.layers\.1\.self_attn\.q_proj\.weight' in 'nan\.gguf' "
        r"has 2 of 1024 values that are NaN or Inf$",
    )


def test_missing_metadata_key_names_key_and_purpose(tmp_path: Path) -> None:
    file = tmp_path / "bare.gguf"
    writer = gguf.GGUFWriter(file, "llama")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.ones((4, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    failure(
        GGUFCheckpoint(file, name="m").validate,
        r"^model 'm': GGUF file '.*bare\.gguf': metadata key 'llama\.embedding_length' "
        r"is missing \(needed for hidden_size\)$",
    )


def test_unknown_tensor_name(tmp_path: Path) -> None:
    _model, file = write_tiny("llama", tmp_path)
    failure(
        lambda: GGUFCheckpoint(file, name="m").tensor("nope"),
        r"^model 'm': no tensor 'nope' in the checkpoint$",
    )


def test_folder_must_hold_exactly_one_gguf_file(tmp_path: Path) -> None:
    failure(lambda: GGUFCheckpoint(tmp_path / "absent", name="m"), r"does not exist$")
    failure(lambda: GGUFCheckpoint(tmp_path, name="m"), r"^model 'm': no \.gguf file in ")
    (tmp_path / "a.gguf").write_bytes(b"")
    (tmp_path / "b.gguf").write_bytes(b"")
    failure(
        lambda: GGUFCheckpoint(tmp_path, name="m"),
        r"holds 2 \.gguf files \['a\.gguf', 'b\.gguf'\]; give the file itself",
    )
    (tmp_path / "weights.bin").write_bytes(b"")
    failure(lambda: GGUFCheckpoint(tmp_path / "weights.bin", name="m"), r"is not a \.gguf file$")


def test_file_without_tokenizer_metadata_has_no_tokenizer(tmp_path: Path) -> None:
    file = write_gguf(tmp_path / "bare.gguf", CONFIGS["llama"], saved_tensors(tiny_model("llama")))
    assert load_gguf_tokenizer(GGUFCheckpoint(file, name="m")) is False


def test_module_that_transformers_cannot_build_is_one_line(tmp_path: Path) -> None:
    lying = {**CONFIGS["llama"], "intermediate_size": 48}  # the tensors are 64 wide
    file = write_gguf(tmp_path / "lying.gguf", lying, saved_tensors(tiny_model("llama")))
    failure(
        lambda: build_gguf_module(GGUFCheckpoint(file, name="m"), dtype="float32", device="cpu"),
        r"^model 'm': transformers cannot build the module from '.*lying\.gguf': ",
    )


def test_rope_scaling_terrain_does_not_read_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "longrope.gguf"
    writer = gguf.GGUFWriter(file, "llama")
    write_metadata(writer, ARCHITECTURES["llama"], CONFIGS["llama"], "F32", "broken")
    writer.add_rope_scaling_type(gguf.RopeScalingType.LONGROPE)
    writer.add_tensor("token_embd.weight", np.ones((272, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    failure(
        GGUFCheckpoint(file, name="m").validate,
        r"^model 'm': GGUF file '.*longrope\.gguf': metadata key 'llama\.rope\.scaling\.type' "
        r"is 'longrope'; terrain reads 'none', 'linear' and 'yarn' rope scaling only$",
    )
