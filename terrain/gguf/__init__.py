"""GGUF checkpoints (llama.cpp's format) read as Hugging Face tensors, lazily dequantized.

`GGUFCheckpoint` has terrain.checkpoint.Checkpoint's interface: names, shapes and values in
transformers' layout, a config rebuilt from the metadata, a fingerprint. `loading` builds
the tokenizer and the transformers module from the same file; `export` writes GGUF files
the way llama.cpp's converter does, for synthetic checkpoints and tests.
"""

from __future__ import annotations

from terrain.gguf.checkpoint import GGUFCheckpoint, is_gguf
from terrain.gguf.loading import build_gguf_module, load_gguf_tokenizer
from terrain.gguf.names import ARCHITECTURES

__all__ = [
    "ARCHITECTURES",
    "GGUFCheckpoint",
    "build_gguf_module",
    "is_gguf",
    "load_gguf_tokenizer",
]
