"""Cross-layer weight correlation: cosine of flattened same-role weights of different layers.

Independent isotropic vectors in R^n have cosine with mean 0 and sd 1/sqrt(n), the null
shown beside the measured values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from terrain.measures.kernels import gram
from terrain.stats import independent_cosine_sd

# Values per layer per step of the accumulated Gram, and per float32 partial product.
COSINE_CHUNK = 1 << 18
COSINE_BLOCK = 1 << 10


def cosine_matrix(tensors: Sequence[torch.Tensor]) -> NDArray[np.float64]:
    """Layer x layer cosine of flattened tensors, via one Gram matrix in float64."""
    if len(tensors) < 2:
        raise ValueError(f"need at least two tensors to correlate, got {len(tensors)}")
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"tensors of one role must share a shape, got {sorted(shapes)}")
    flat = torch.stack([t.reshape(-1).to(torch.float64) for t in tensors])
    gram = flat @ flat.T
    norms = gram.diagonal().sqrt()
    return (gram / torch.outer(norms, norms).clamp_min(1e-300)).cpu().numpy()


class CosineGram:
    """The layer × layer Gram of flattened same-shape tensors, accumulated piece by piece:
    each call adds one piece of every layer (the same coordinates of each), so no layer is
    ever held whole (a 7B model's MLP weights are 5.8 GB per role in float32).

    Each step's products are float32 sums over blocks of COSINE_BLOCK values, added up in
    float64: a block's rounding is at most COSINE_BLOCK·ε₃₂ ≈ 6e-5 of ‖a‖‖b‖ and about
    √COSINE_BLOCK·ε₃₂ ≈ 2e-6 in practice (5e-10 on the cosines of BERT-large-shape MLP
    weights against a float64 product), far below the null's 1/√n. Twice as fast as
    converting to float64, which moves three times the bytes. The cosine is unchanged by
    any common reordering of coordinates, so pieces may come in any order that is the same
    for every layer.
    """

    def __init__(self, layers: int, device: torch.device | str = "cpu") -> None:
        if layers < 2:
            raise ValueError(f"need at least two tensors to correlate, got {layers}")
        self.layers = layers
        self.total = torch.zeros(layers, layers, dtype=torch.float64, device=device)
        self.values = 0

    def add(self, pieces: Sequence[torch.Tensor]) -> None:
        """One piece of each layer, in layer order, all of one size."""
        flat = [p.reshape(-1).float() for p in pieces]
        if len(flat) != self.layers or len({f.numel() for f in flat}) != 1:
            raise ValueError("one piece of equal size per layer is needed")
        size = flat[0].numel()
        for start in range(0, size, COSINE_CHUNK):
            x = torch.stack([f[start : start + COSINE_CHUNK] for f in flat])
            blocks = x.shape[1] // COSINE_BLOCK
            if blocks:
                xb = x[:, : blocks * COSINE_BLOCK].reshape(self.layers, blocks, -1)
                xb = xb.transpose(0, 1)
                self.total += torch.bmm(xb, xb.transpose(1, 2)).sum(dim=0, dtype=torch.float64)
            if x.shape[1] > blocks * COSINE_BLOCK:
                rest = x[:, blocks * COSINE_BLOCK :]
                self.total += gram(rest, outer=True, dtype=torch.float64)
        self.values += size

    def cosines(self) -> NDArray[np.float64]:
        norms = self.total.diagonal().sqrt()
        out: NDArray[np.float64] = (
            (self.total / torch.outer(norms, norms).clamp_min(1e-300)).cpu().numpy()
        )
        return out


def layer_cosines(tensors: Sequence[torch.Tensor]) -> NDArray[np.float64]:
    """Layer × layer cosine of whole same-shape tensors (one CosineGram piece each)."""
    if len({tuple(t.shape) for t in tensors}) != 1:
        raise ValueError("tensors of one role must share a shape")
    acc = CosineGram(len(tensors), tensors[0].device)
    acc.add(tensors)
    return acc.cosines()


@dataclass(frozen=True)
class RoleCorrelation:
    stack: str
    role: str
    matrix: NDArray[np.float64]
    n: int  # values per flattened tensor

    @property
    def adjacent(self) -> NDArray[np.float64]:
        return np.diagonal(self.matrix, offset=1).copy()

    @property
    def max_abs_adjacent(self) -> float:
        return float(np.max(np.abs(self.adjacent)))

    @property
    def null_sd(self) -> float:
        return independent_cosine_sd(self.n)

    def as_dict(self) -> dict[str, object]:
        return {
            "stack": self.stack,
            "role": self.role,
            "n": self.n,
            "adjacent": [float(x) for x in self.adjacent],
            "max_abs_adjacent": self.max_abs_adjacent,
            "null_sd": self.null_sd,
            "matrix": [[float(x) for x in row] for row in self.matrix],
        }
