"""Products and reductions the measures share, each by its fastest route on the device.

On the CPU they go through NumPy: torch's CPU kernels for float conversion and
float64-accumulated reductions are several times slower there (see
benchmarks/battery.py), and NumPy forms xᵀx with BLAS syrk (one triangle, half the flops
of a general product, then mirrored) while releasing the GIL, so that pool threads
(terrain/workpool.py) run side by side. SciPy's BLAS wrappers hold the GIL for the whole
call. On other devices these are plain torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}  # the dtypes of a Gram
# Bytes of one block's float64 copy in the blocked products: a 7B MLP weight in 6 blocks.
BLOCK_BYTES = 64 << 20


def gram(x: torch.Tensor, *, outer: bool = False, dtype: torch.dtype | None = None) -> torch.Tensor:
    """xᵀx (n × n for x of shape (m, n)), or x·xᵀ when `outer`, computed in `dtype` (default
    x's; float32 or float64)."""
    if x.dim() != 2:
        raise ValueError(f"a Gram needs a 2-D matrix, got shape {list(x.shape)}")
    dtype = dtype or x.dtype
    if dtype not in _NUMPY:
        raise ValueError(f"Grams are formed in float32 or float64, not {dtype}")
    if x.device.type != "cpu":
        y = x.to(dtype)
        return y @ y.T if outer else y.T @ y
    a = np.ascontiguousarray(as_numpy(x), dtype=_NUMPY[dtype])
    # One buffer and its transposed view: NumPy recognises the pair and calls syrk.
    return torch.from_numpy(a @ a.T if outer else a.T @ a)


def blocked_gram(
    x: torch.Tensor,
    *,
    outer: bool = False,
    block_bytes: int = BLOCK_BYTES,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """The Gram xᵀx (or x·xᵀ) in `dtype` (float64 by default, or float32) of a matrix in
    any float dtype, summed over blocks of its inner axis, each converted on its own: the
    float64 copy of a 7B MLP weight (360 MB) is never made, only one block of it
    (`block_bytes`) at a time.

    A matrix whose float64 copy fits in one block takes the unblocked route of `gram`,
    so small models get exactly the values a single product gives.
    """
    if x.dim() != 2:
        raise ValueError(f"a Gram needs a 2-D matrix, got shape {list(x.shape)}")
    blocks = inner_blocks((x.shape[0], x.shape[1]), outer=outer, block_bytes=block_bytes)
    if len(blocks) == 1:
        return gram(x, outer=outer, dtype=dtype)
    other = x.shape[0] if outer else x.shape[1]
    total = torch.zeros(other, other, dtype=dtype, device=x.device)
    for block in blocks:
        total += gram(take_block(x, block, outer=outer), outer=outer, dtype=dtype)
    return total


def inner_blocks(
    shape: tuple[int, int], *, outer: bool, block_bytes: int = BLOCK_BYTES
) -> list[slice]:
    """The slices of a matrix's inner axis (its rows for xᵀx, its columns for x·xᵀ) whose
    float64 copies hold at most `block_bytes` each (one row or column at least): a Gram, or
    any sum over the entries, adds up block by block over them."""
    inner = shape[1] if outer else shape[0]
    other = shape[0] if outer else shape[1]
    step = max(1, block_bytes // (8 * max(1, other)))
    return [slice(start, min(inner, start + step)) for start in range(0, max(inner, 1), step)]


def take_block(x: torch.Tensor, block: slice, *, outer: bool) -> torch.Tensor:
    """One block of `inner_blocks`, contiguous (a copy of the block only, in x's dtype)."""
    return (x[:, block] if outer else x[block]).contiguous()


def as_numpy(x: torch.Tensor) -> NDArray[Any]:
    """A NumPy view of a CPU tensor (a float32 copy of bfloat16, which NumPy lacks)."""
    x = x.detach()
    return (x.float() if x.dtype == torch.bfloat16 else x).numpy()


def as_float64(x: torch.Tensor) -> torch.Tensor:
    """`x` in float64 (a copy unless it is float64 already)."""
    if x.device.type != "cpu":
        return x.to(torch.float64)
    return torch.from_numpy(as_numpy(x).astype(np.float64, copy=False))


def dot64(x: torch.Tensor, y: torch.Tensor) -> float:
    """Σ x·y over every entry of two tensors of one shape, accumulated in float64."""
    if x.shape != y.shape:
        raise ValueError(f"a dot product needs one shape, got {list(x.shape)} and {list(y.shape)}")
    if x.device.type != "cpu":
        return float(torch.sum(x.to(torch.float64) * y.to(torch.float64)))
    a = as_numpy(x).reshape(-1).astype(np.float64, copy=False)
    b = as_numpy(y).reshape(-1).astype(np.float64, copy=False)
    return float(np.dot(a, b))


def sum64(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum over `dim` (all values when None) with float64 accumulators, as float64, without
    a float64 copy of `x`."""
    if x.device.type != "cpu":
        return x.sum(dim=dim, dtype=torch.float64)
    return torch.as_tensor(as_numpy(x).sum(axis=dim, dtype=np.float64))


def norms64(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Euclidean norms of a 2-D tensor along `dim` (1: of each row, 0: of each column),
    accumulated in float64."""
    if x.device.type != "cpu":
        norms: torch.Tensor = torch.linalg.vector_norm(x, dim=dim, dtype=torch.float64)
        return norms
    a = as_numpy(x)
    spec = "ij,ij->i" if dim == 1 else "ij,ij->j"
    return torch.from_numpy(np.sqrt(np.einsum(spec, a, a, dtype=np.float64)))
