"""The research's reference volumes of terrain/measures/simplex.py: one float64
Cayley-Menger determinant per simplex, in Python, verbatim from the research notes.

Kept only as the oracle of the tests and the speed baseline of the benchmark
(benchmarks/simplex_cv.py); measurements use `simplex_volumes`, which gives the same
volumes from the Gram matrix of the edges.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["cayley_menger_volumes_loop"]


def cayley_menger_volumes_loop(
    points: NDArray[np.floating[Any]], index: NDArray[np.int64]
) -> NDArray[np.float64]:
    """The research reference: one float64 Cayley-Menger determinant per simplex, in Python.

    Kept only as the oracle for tests and the speed baseline of the benchmark;
    use `simplex_volumes` for measurements. Returns volumes aligned with
    `index`, NaN where the reference would skip the simplex (CM volume^2 <= 0);
    dropping the NaNs gives the research's list.
    """
    pts = np.asarray(points, dtype=np.float64)
    out = np.full(len(index), np.nan, dtype=np.float64)
    for s, row in enumerate(index):
        vs = _cayley_menger_volume_sq(pts[row])
        if vs > 0:
            out[s] = math.sqrt(vs)
    return out


def _cayley_menger_volume_sq(points: NDArray[np.float64]) -> float:
    """Squared volume from the Cayley-Menger determinant, verbatim from the research notes."""
    n = len(points)
    D = np.zeros((n + 1, n + 1))
    D[0, 1:] = 1
    D[1:, 0] = 1
    for i in range(n):
        for j in range(i + 1, n):
            d_sq = np.sum((points[i] - points[j]) ** 2)
            D[i + 1, j + 1] = d_sq
            D[j + 1, i + 1] = d_sq
    k = n - 1
    sign = (-1) ** (k + 1)
    denom = (2**k) * math.factorial(k) ** 2
    return float(sign * np.linalg.det(D) / denom)
