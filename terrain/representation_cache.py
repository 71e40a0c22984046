"""Pooled text representations kept between properties and runs.

Vectors are kept per (checkpoint fingerprint, dtype, token ids, pooling, transformers
version): in memory for the process (an LRU) and, when a directory is given, on disk as
.npy files (no pickle, written atomically), so a second run and the stability loop do not
encode again. Keying by the token ids (not the text) makes the key cover the tokenizer and
the prompt.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

_POOLING = "mean-over-attention-mask/v1"


class RepresentationCache:
    """Pooled vectors by key: an in-memory LRU, backed by .npy files when `directory` is set."""

    def __init__(self, directory: Path | None = None, max_items: int = 64) -> None:
        self.directory = directory
        self.max_items = max_items
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def _file(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / key[:2] / f"{key}.npy"

    def get(self, key: str) -> torch.Tensor | None:
        if key in self._memory:
            self._memory.move_to_end(key)
            self.hits += 1
            return self._memory[key]
        file = self._file(key)
        if file is not None and file.is_file():
            try:
                array = np.load(file, allow_pickle=False)
            except (OSError, ValueError):
                array = None  # unreadable or truncated: recompute and overwrite
            if array is not None:
                tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
                self._remember(key, tensor)
                self.hits += 1
                return tensor
        self.misses += 1
        return None

    def put(self, key: str, value: torch.Tensor) -> None:
        value = value.detach().to("cpu", torch.float32).contiguous()
        self._remember(key, value)
        file = self._file(key)
        if file is None:
            return
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=file.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, value.numpy(), allow_pickle=False)
            os.replace(tmp, file)  # atomic: concurrent workers never read a partial file
        except OSError:
            pass  # a read-only cache only costs a recomputation

    def _remember(self, key: str, value: torch.Tensor) -> None:
        self._memory[key] = value
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_items:
            self._memory.popitem(last=False)


_DEFAULT_CACHES: dict[Path | None, RepresentationCache] = {}


def default_cache(directory: Path | None) -> RepresentationCache:
    """One cache per directory per process (None: memory only)."""
    if directory not in _DEFAULT_CACHES:
        _DEFAULT_CACHES[directory] = RepresentationCache(directory)
    return _DEFAULT_CACHES[directory]


def cache_key(fingerprint: str, dtype: torch.dtype, ids: Sequence[Sequence[int]]) -> str:
    import transformers

    digest = hashlib.sha256()
    for part in (fingerprint, str(dtype), _POOLING, transformers.__version__):
        digest.update(part.encode())
        digest.update(b"\0")
    for row in ids:
        digest.update(np.asarray(row, dtype=np.int64).tobytes())
        digest.update(b"\xff")
    return digest.hexdigest()
