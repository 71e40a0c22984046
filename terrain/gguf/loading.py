"""The tokenizer and the transformers module of a GGUF checkpoint, through transformers.

Both go through `from_pretrained(folder, gguf_file=...)`: transformers rebuilds the
tokenizer from the tokenizer.ggml.* metadata, and dequantizes the weights (with gguf) into
the module, undoing the llama Q/K permutation itself. The module is built from terrain's
config (terrain/gguf/hf_config.py), not from transformers' own reading of the metadata,
which gets Qwen3's head_dim wrong whenever it is not 128; the weights are still
transformers' own dequantization, so a forward through this module is an independent check
of terrain's reader. Loading a module from GGUF needs the `accelerate` package.

Signatures mirror terrain.checkpoint.build_module and load_tokenizer, so a caller can pick
by checkpoint type; `trust_remote_code` is accepted and unused (a GGUF file carries no code).
"""

from __future__ import annotations

from typing import Any

import torch

from terrain.errors import CheckpointError
from terrain.gguf.checkpoint import GGUFCheckpoint
from terrain.gguf.reader import one_line
from terrain.modules import finite_module

# What transformers raises for a file it cannot turn into a tokenizer or module.
_LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError, ImportError)


def load_gguf_tokenizer(checkpoint: GGUFCheckpoint, trust_remote_code: bool = False) -> Any:
    """The tokenizer the file's metadata describes, or False when it has none."""
    del trust_remote_code
    if checkpoint.metadata("tokenizer.ggml.model") is None:
        return False
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(checkpoint.path), gguf_file=checkpoint.file.name)
    except _LOAD_ERRORS as e:
        raise CheckpointError(
            f"model {checkpoint.name!r}: cannot build the tokenizer from the metadata of "
            f"{str(checkpoint.file)!r}: {one_line(e)}"
        ) from None


def build_gguf_module(
    checkpoint: GGUFCheckpoint, *, dtype: str, device: str, trust_remote_code: bool = False
) -> Any:
    """The file's ...ForCausalLM in eval mode, weights dequantized by transformers."""
    del trust_remote_code
    import transformers

    config = dict(checkpoint.config)
    cls = getattr(transformers, config["architectures"][0])
    try:
        hf_config = transformers.AutoConfig.for_model(**config)
        module = cls.from_pretrained(
            str(checkpoint.path),
            gguf_file=checkpoint.file.name,
            config=hf_config,
            dtype=getattr(torch, dtype),
        )
    except _LOAD_ERRORS as e:
        raise CheckpointError(
            f"model {checkpoint.name!r}: transformers cannot build the module from "
            f"{str(checkpoint.file)!r}: {one_line(e)}"
        ) from None
    return finite_module(module, checkpoint.name, device)
