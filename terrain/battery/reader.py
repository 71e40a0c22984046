"""Reading a checkpoint's tensors for the battery: stored dtype, file order, row chunks.

The battery reads from any tensor source: a safetensors checkpoint (memory-mapped, in its
stored dtype: a bf16 release stays bf16 in the page cache, shared by workers, and costs no
anonymous memory until a chunk is converted), a GGUF file, or a random-init null generated
tensor by tensor. What it needs beyond the anatomy's `TensorSource` is optional there and
supplied here when a source lacks it: the read order, raw stored tensors and row slices.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import Any

import torch

from terrain.anatomy.base import TensorRole, TensorSource
from terrain.measures.chunks import Chunks

# Rows converted to float32 at once when a measure streams a tensor (64 MiB of float32).
CHUNK_BYTES = 64 << 20
_FLOAT8 = {getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, n)}


class Reader:
    """The battery's reads of one source, counted (tensor reads and stored bytes)."""

    def __init__(self, source: TensorSource, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.source = source
        self.chunk_bytes = chunk_bytes
        self.reads: dict[str, dict[str, int]] = {}  # pass -> tensor -> reads
        self.bytes_read = 0
        self._lock = threading.Lock()

    def order(self, names: set[str]) -> list[str]:
        """`names` in the source's read order (file by file, front to back), else sorted."""
        order = getattr(self.source, "read_order", None)
        if order is None:
            return sorted(names)
        return [n for n in order() if n in names]

    def nbytes(self, name: str) -> int:
        fn = getattr(self.source, "nbytes", None)
        if fn is not None:
            return int(fn(name))
        return math.prod(self.source.tensor_shapes()[name]) * 4

    def count(self, name: str, stage: str = "weights") -> None:
        """One read of a tensor's stored bytes by one pass."""
        with self._lock:
            reads = self.reads.setdefault(stage, {})
            reads[name] = reads.get(name, 0) + 1
            self.bytes_read += self.nbytes(name)

    def stored(self, name: str) -> torch.Tensor:
        """The tensor as stored (a view of the memory map where the source has one); float8
        is upcast to float32, which no linear-algebra kernel takes."""
        fn: Any = getattr(self.source, "stored", None)
        t: torch.Tensor = fn(name) if fn is not None else self.source.tensor(name, torch.float32)
        return t.float() if t.dtype in _FLOAT8 else t

    def role(self, entry: TensorRole, stored: torch.Tensor) -> torch.Tensor:
        """The role's matrix out of its stored tensor, in the stored dtype (a copy only for
        the slice of a fused tensor)."""
        return entry.take(stored)

    def chunks(self, entry: TensorRole, dtype: torch.dtype = torch.float32) -> Chunks:
        """The role's values as float32 row chunks of at most `chunk_bytes`, each pass
        starting afresh; a fused role is taken out whole first (fused tensors are small)."""
        source = self.source
        rows_fn: Any = getattr(source, "rows", None)
        shape = source.tensor_shapes()[entry.tensor]
        n_rows = shape[0] if shape else 1
        row_bytes = max(1, math.prod(shape[1:])) * 4
        step = max(1, self.chunk_bytes // row_bytes)
        if entry.is_view or rows_fn is None or step >= n_rows:

            def whole() -> Iterator[torch.Tensor]:
                yield entry.take(source.tensor(entry.tensor, dtype))

            return whole

        def sliced() -> Iterator[torch.Tensor]:
            for start in range(0, n_rows, step):
                yield rows_fn(entry.tensor, start, min(n_rows, start + step), dtype)

        return sliced
