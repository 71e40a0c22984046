"""The Hugging Face config dict of a GGUF file, rebuilt from its metadata and tensor list.

A GGUF file has no config.json: the metadata is the config, under llama.cpp's key names
(`gguf.Keys`, with `{arch}` the file's `general.architecture`). The dict built here is what
transformers 5 would read from the original folder, so terrain's anatomy adapters, its
random-init nulls (`AutoConfig.for_model(**config)`) and the module built from the file all
see one config. Keys the converter writes (`TextModel.set_gguf_parameters`, plus
`LlamaModel`'s vocab_size and rope.dimension_count) are read; what the metadata does not
state is taken from the tensors (vocabulary size, tied embeddings, biases), never from a
config class default, which would be some other checkpoint's value.

transformers' own GGUF config reader is not reused: for qwen3 it ignores
`attention.key_length`, so a Qwen3 whose head_dim is not 128 (Qwen3Config's default) gets
the wrong head size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gguf import GGUFReader, Keys
from gguf.gguf_reader import ReaderTensor

from terrain.errors import CheckpointError
from terrain.gguf.names import Architecture
from terrain.gguf.reader import array_length, field_value

DEFAULT_ROPE_THETA = 10000.0  # llama.cpp's default when rope.freq_base is absent


def _f32(value: float) -> float:
    """A float32 metadata value as the shortest decimal that rounds to it (1e-05, not 9.99e-06)."""
    return float(str(np.float32(value)))


class _Metadata:
    """Typed reads of one architecture's keys, failing with the key and what it was for."""

    def __init__(self, reader: GGUFReader, arch: str, where: str) -> None:
        self.reader, self.arch, self.where = reader, arch, where

    def key(self, template: str) -> str:
        return template.format(arch=self.arch)

    def get(self, template: str) -> Any:
        return field_value(self.reader, self.key(template))

    def integer(self, template: str, purpose: str, default: int | None = None) -> int:
        value = self.get(template)
        if isinstance(value, list) and value and all(v == value[0] for v in value):
            value = value[0]  # a per-layer list with one value throughout
        if value is None and default is not None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            state = "is missing" if value is None else f"is {value!r}, not one integer"
            raise CheckpointError(
                f"{self.where}: metadata key {self.key(template)!r} {state} (needed for {purpose})"
            )
        return value

    def number(self, template: str, purpose: str, default: float | None = None) -> float:
        value = self.get(template)
        if value is None and default is not None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            state = "is missing" if value is None else f"is {value!r}, not a number"
            raise CheckpointError(
                f"{self.where}: metadata key {self.key(template)!r} {state} (needed for {purpose})"
            )
        return _f32(value)


def _rope_parameters(meta: _Metadata) -> dict[str, Any]:
    """transformers 5's `rope_parameters` from rope.freq_base and the rope.scaling.* keys."""
    theta = meta.number(Keys.Rope.FREQ_BASE, "rope_theta", DEFAULT_ROPE_THETA)
    scaling = meta.get(Keys.Rope.SCALING_TYPE)
    if scaling in (None, "none"):
        return {"rope_type": "default", "rope_theta": theta}
    factor = meta.number(Keys.Rope.SCALING_FACTOR, "the rope scaling factor", 1.0)
    if scaling == "linear":
        return {"rope_type": "linear", "rope_theta": theta, "factor": factor}
    if scaling == "yarn":
        original = meta.integer(Keys.Rope.SCALING_ORIG_CTX_LEN, "yarn's original context")
        return {
            "rope_type": "yarn",
            "rope_theta": theta,
            "factor": factor,
            "original_max_position_embeddings": original,
        }
    raise CheckpointError(
        f"{meta.where}: metadata key {meta.key(Keys.Rope.SCALING_TYPE)!r} is {scaling!r}; "
        "terrain reads 'none', 'linear' and 'yarn' rope scaling only"
    )


def _optional_id(reader: GGUFReader, key: str) -> int | None:
    value = field_value(reader, key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _has(tensors: Mapping[str, ReaderTensor], suffix: str) -> bool:
    return any(name.startswith("blk.") and name.endswith(suffix) for name in tensors)


def hf_config(
    reader: GGUFReader,
    arch: Architecture,
    tensors: Mapping[str, ReaderTensor],
    where: str,
) -> dict[str, Any]:
    """The config dict transformers 5 expects for this file (see the module docstring)."""
    meta = _Metadata(reader, arch.gguf_name, where)
    hidden = meta.integer(Keys.LLM.EMBEDDING_LENGTH, "hidden_size")
    heads = meta.integer(Keys.Attention.HEAD_COUNT, "num_attention_heads")
    # The converter writes attention.key_length when the HF config had head_dim, and (llama)
    # rope.dimension_count = head_dim; without either, transformers' hidden // heads holds.
    head_dim = meta.integer(
        Keys.Attention.KEY_LENGTH,
        "head_dim",
        meta.integer(Keys.Rope.DIMENSION_COUNT, "head_dim", hidden // max(heads, 1))
        if arch.gguf_name == "llama"
        else hidden // max(heads, 1),
    )
    embedding = tensors.get("token_embd.weight")
    vocab_default = int(embedding.shape[1]) if embedding is not None else None
    vocab_default = vocab_default or array_length(reader, Keys.Tokenizer.LIST)
    config: dict[str, Any] = {
        "model_type": arch.model_type,
        "architectures": [arch.hf_class],
        "hidden_size": hidden,
        "intermediate_size": meta.integer(Keys.LLM.FEED_FORWARD_LENGTH, "intermediate_size"),
        "num_hidden_layers": meta.integer(Keys.LLM.BLOCK_COUNT, "num_hidden_layers"),
        "num_attention_heads": heads,
        "num_key_value_heads": meta.integer(
            Keys.Attention.HEAD_COUNT_KV, "num_key_value_heads", heads
        ),
        "head_dim": head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": meta.number(Keys.Attention.LAYERNORM_RMS_EPS, "rms_norm_eps"),
        "rope_parameters": _rope_parameters(meta),
        "max_position_embeddings": meta.integer(Keys.LLM.CONTEXT_LENGTH, "max_position_embeddings"),
        "vocab_size": meta.integer(Keys.LLM.VOCAB_SIZE, "vocab_size", vocab_default),
        # llama.cpp writes the output projection only when it is not the embedding
        "tie_word_embeddings": "output.weight" not in tensors,
        "bos_token_id": _optional_id(reader, Keys.Tokenizer.BOS_ID),
        "eos_token_id": _optional_id(reader, Keys.Tokenizer.EOS_ID),
        "pad_token_id": _optional_id(reader, Keys.Tokenizer.PAD_ID),
    }
    if arch.gguf_name in ("llama", "qwen3"):  # qwen2's q/k/v biases are not a config option
        config["attention_bias"] = _has(tensors, "attn_q.bias")
    if arch.gguf_name == "llama":
        config["mlp_bias"] = _has(tensors, "ffn_up.bias")
    return config
