"""Representation geometry of text models (seed notebook §1, §13): what its measures share.

Pure functions on tensors: unit rows, the exact mean pairwise cosine of a table, and the
mean pair cosine of weighted multisets of rows (bootstrap resamples). The measures built on
them: the digit manifold (terrain/measures/digits.py), semantic-category clustering of the
token embedding (terrain/measures/categories.py) and layer-by-layer hidden-state geometry
(terrain/measures/layer_geometry.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

__all__ = ["mean_pairwise_cosine", "unit_rows", "weighted_pair_cosine"]

_TINY = 1e-12  # a zero row stays zero instead of dividing by zero

# Rows turned into unit vectors at once by mean_pairwise_cosine (128 MiB of float64 at D=1024).
_PAIRWISE_CHUNK = 16384


def unit_rows(x: torch.Tensor | NDArray[Any]) -> NDArray[np.float64]:
    """Rows scaled to unit length (float64).

    The research divided by |x| + 1e-8, which moves every cosine by ~1e-8/|x|; here the
    norm is only clamped away from zero, so a row's cosine with itself is 1.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        x = (t.float() if t.dtype == torch.bfloat16 else t).numpy()
    a = np.asarray(x, np.float64)
    norm = np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), _TINY)
    return np.asarray(a / norm, dtype=np.float64)


def mean_pairwise_cosine(
    x: torch.Tensor | NDArray[Any], chunk_rows: int = _PAIRWISE_CHUNK
) -> float:
    """Mean cosine over all pairs i < j of rows of x, exactly, in O(N D).

    Sum over i != j of u_i . u_j is |sum u|^2 - sum |u_i|^2, so no N x N matrix is formed;
    the unit rows are made `chunk_rows` at a time (a 7B model's table in float64 is 3 GB).
    """
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"a mean pairwise cosine needs at least 2 rows, got {n}")
    s: NDArray[Any] | None = None
    squares = 0.0
    for start in range(0, n, chunk_rows):
        u = unit_rows(x[start : start + chunk_rows])
        s = u.sum(axis=0) if s is None else s + u.sum(axis=0)
        squares += float(np.sum(u * u))
    assert s is not None
    return float((s @ s - squares) / (n * (n - 1)))


def weighted_pair_cosine(u: NDArray[np.float64], weights: NDArray[np.float64]) -> NDArray[Any]:
    """Mean cosine over pairs of distinct items of each weighted multiset of unit rows.

    u: (n, D) unit rows; weights: (B, n) multiplicities (a bootstrap resample's counts).
    A pair of copies of the same item is not a pair: sum_{i != j} w_i w_j u_i . u_j over
    sum_{i != j} w_i w_j. Returns (B,); NaN where fewer than two distinct items are drawn.
    """
    s = weights @ u
    self_w = np.sum(weights * weights * np.sum(u * u, axis=1), axis=1)
    num = np.einsum("bd,bd->b", s, s) - self_w
    total = weights.sum(axis=1)
    den = total * total - np.sum(weights * weights, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(den > 0, num / den, np.nan), dtype=np.float64)
