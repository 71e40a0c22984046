"""Writing a transformers state dict as a GGUF file, the way llama.cpp's converter does.

For synthetic GGUF checkpoints (seeded replicas, test fixtures) whose reading can be checked
against the original tensors. It follows the converter (ggml-org/llama.cpp
`conversion/base.py` TextModel and `conversion/llama.py` LlamaModel): metadata under
`gguf.Keys`, names from gguf's `TensorNameMap`, Q/K rows permuted for `llama`
(terrain/gguf/rope_layout.py), tied output projections not written. Quantization follows
llama-quantize's rule that 1-D tensors (norm gains, biases) stay F32; every matrix is
stored in the one requested type with `gguf.quants.quantize`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import (
    GGML_QUANT_VERSION,
    GGMLQuantizationType,
    GGUFWriter,
    LlamaFileType,
    RopeScalingType,
    TokenType,
)
from gguf.quants import quantize

from terrain.gguf.names import ARCHITECTURES, Architecture, gguf_name_for
from terrain.gguf.rope_layout import permute_rows

_FILE_TYPES = {"F32": LlamaFileType.ALL_F32, "F16": LlamaFileType.MOSTLY_F16}


@dataclass(frozen=True)
class Vocabulary:
    """The tokenizer.ggml.* metadata of a byte-level BPE tokenizer."""

    tokens: tuple[str, ...]
    token_types: tuple[int, ...]
    merges: tuple[str, ...]
    bos_id: int
    eos_id: int
    unk_id: int
    pad_id: int
    model: str = "gpt2"
    pre: str = "gpt-2"


SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # unk, bos, eos (= pad)
_SAMPLE = "the quick brown fox jumps over the lazy dog then the fox sleeps"


def byte_level_vocabulary(n_merges: int, sample: str = _SAMPLE) -> Vocabulary:
    """A small, complete byte-level BPE vocabulary: 3 specials, the 256 byte symbols and
    `n_merges` merges learned from `sample` (most frequent pair first, ties by spelling).

    Every text encodes (each byte has a symbol), so a tiny model gets a real tokenizer of
    3 + 256 + n_merges tokens.
    """
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    spelling: dict[int, str] = bytes_to_unicode()  # type: ignore[no-untyped-call]
    symbols = [spelling[b] for b in range(256)]
    space = spelling[ord(" ")]
    words = [list(w if i == 0 else space + w) for i, w in enumerate(sample.split())]
    merges: list[str] = []
    learned: list[str] = []
    while len(merges) < n_merges:
        pairs = Counter(pair for w in words for pair in pairwise(w))
        if not pairs:
            break
        (a, b), _count = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        merges.append(f"{a} {b}")
        learned.append(a + b)
        words = [_merge(w, a, b) for w in words]
    tokens = (*SPECIAL_TOKENS, *symbols, *learned)
    types = (
        *[int(TokenType.CONTROL)] * len(SPECIAL_TOKENS),
        *[int(TokenType.NORMAL)] * (len(tokens) - len(SPECIAL_TOKENS)),
    )
    return Vocabulary(tokens, types, tuple(merges), bos_id=1, eos_id=2, unk_id=0, pad_id=2)


def _merge(word: list[str], a: str, b: str) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
            out.append(a + b)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def _architecture(config: Mapping[str, Any]) -> Architecture:
    model_type = config.get("model_type")
    for arch in ARCHITECTURES.values():
        if arch.model_type == model_type:
            return arch
    raise ValueError(f"no GGUF architecture for model_type {model_type!r}")


def _rope_theta(config: Mapping[str, Any]) -> float:
    rope = config.get("rope_parameters") or {}
    return float(rope.get("rope_theta", config.get("rope_theta", 10000.0)))


def write_metadata(
    writer: GGUFWriter, arch: Architecture, config: Mapping[str, Any], qtype: str, name: str
) -> None:
    """The keys TextModel.set_gguf_parameters (and LlamaModel's override) write."""
    heads = int(config["num_attention_heads"])
    writer.add_name(name)
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(heads)
    writer.add_head_count_kv(int(config.get("num_key_value_heads") or heads))
    writer.add_rope_freq_base(_rope_theta(config))
    rope = config.get("rope_parameters") or {}
    if rope.get("rope_type") in ("linear", "yarn"):
        writer.add_rope_scaling_type(RopeScalingType(rope["rope_type"]))
        writer.add_rope_scaling_factor(float(rope["factor"]))
        if rope["rope_type"] == "yarn":
            writer.add_rope_scaling_orig_ctx_len(int(rope["original_max_position_embeddings"]))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    if config.get("head_dim") is not None:
        writer.add_key_length(int(config["head_dim"]))
        writer.add_value_length(int(config["head_dim"]))
    file_type = _FILE_TYPES[qtype] if qtype in _FILE_TYPES else LlamaFileType[f"MOSTLY_{qtype}"]
    writer.add_file_type(int(file_type))
    if arch.gguf_name == "llama":
        writer.add_vocab_size(int(config["vocab_size"]))
        head_dim = config.get("head_dim") or int(config["hidden_size"]) // heads
        writer.add_rope_dimension_count(int(head_dim))
    writer.add_quantization_version(GGML_QUANT_VERSION)


def _write_vocabulary(writer: GGUFWriter, vocab: Vocabulary) -> None:
    writer.add_tokenizer_model(vocab.model)
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(list(vocab.tokens))
    writer.add_token_types(list(vocab.token_types))
    writer.add_token_merges(list(vocab.merges))
    writer.add_bos_token_id(vocab.bos_id)
    writer.add_eos_token_id(vocab.eos_id)
    writer.add_unk_token_id(vocab.unk_id)
    writer.add_pad_token_id(vocab.pad_id)
    writer.add_add_bos_token(False)


_QK = re.compile(r".*self_attn\.(?P<which>[qk])_proj\.(weight|bias)")


def stored_rows(arch: Architecture, config: Mapping[str, Any], name: str, t: torch.Tensor) -> Any:
    """A tensor as the converter stores it: float32 numpy, Q/K rows permuted for llama."""
    data = t.detach().to(torch.float32).cpu()
    m = _QK.fullmatch(name)
    if arch.qk_permuted and m is not None:
        heads = int(config["num_attention_heads"])
        if m["which"] == "k":
            heads = int(config.get("num_key_value_heads") or heads)
        data = permute_rows(data, heads)
    return data.contiguous().numpy()


def write_gguf(
    path: Path,
    config: Mapping[str, Any],
    tensors: Mapping[str, torch.Tensor],
    *,
    quantization: str = "F32",
    vocabulary: Vocabulary | None = None,
    name: str = "terrain synthetic",
    extra_tensors: Mapping[str, np.ndarray[Any, Any]] | None = None,
) -> Path:
    """Write `tensors` (Hugging Face names) of a llama/qwen2/qwen3 `config` to `path`.

    `extra_tensors` are written as F32 under their GGUF names, like the tensors the
    converter generates itself (`generate_extra_tensors`, e.g. Llama 3's `rope_freqs`).
    """
    arch = _architecture(config)
    qtype = GGMLQuantizationType[quantization]
    layers = int(config["num_hidden_layers"])
    writer = GGUFWriter(path, arch.gguf_name)
    write_metadata(writer, arch, config, quantization, name)
    if vocabulary is not None:
        _write_vocabulary(writer, vocabulary)
    tied = bool(config.get("tie_word_embeddings"))
    for hf_name, t in tensors.items():
        if tied and hf_name == "lm_head.weight":
            continue
        gguf_name = gguf_name_for(arch, layers, hf_name)
        if gguf_name is None:
            raise ValueError(f"no GGUF name for tensor {hf_name!r} of {arch.gguf_name}")
        data = stored_rows(arch, config, hf_name, t)
        _add_tensor(writer, gguf_name, data, qtype if data.ndim >= 2 else GGMLQuantizationType.F32)
    for gguf_name, values in (extra_tensors or {}).items():
        _add_tensor(writer, gguf_name, values.astype(np.float32), GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_tensor(
    writer: GGUFWriter, name: str, data: np.ndarray[Any, Any], qtype: GGMLQuantizationType
) -> None:
    packed = quantize(data, qtype)
    if qtype in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
        writer.add_tensor(name, packed)
    else:
        writer.add_tensor(name, packed, raw_dtype=qtype)


def quantized_round_trip(data: np.ndarray[Any, Any], quantization: str) -> np.ndarray[Any, Any]:
    """gguf's own quantize-then-dequantize of a float32 matrix (the expected read-back)."""
    from gguf.quants import dequantize

    qtype = GGMLQuantizationType[quantization]
    return np.asarray(dequantize(quantize(data, qtype), qtype), dtype=np.float32)
