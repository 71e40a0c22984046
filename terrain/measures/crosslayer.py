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

from terrain.anatomy import Anatomy
from terrain.stats import independent_cosine_sd


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


def crosslayer_correlation(
    anatomy: Anatomy, roles: Sequence[str] = ("q", "k", "v", "o")
) -> list[RoleCorrelation]:
    """Correlation matrices of each role in each stack that has at least two layers."""
    out: list[RoleCorrelation] = []
    for stack in anatomy.stacks():
        for role in roles:
            entries = anatomy.layers(stack, role)
            if len(entries) < 2:
                continue
            tensors = [anatomy.read(e) for e in entries]
            out.append(RoleCorrelation(stack, role, cosine_matrix(tensors), tensors[0].numel()))
    return out
