"""The digit manifold (seed notebook §1): do the embeddings of "0" ... "9" keep their order?

For the embeddings of the tokens "0" ... "9", the research correlates |i - j| with the
cosine of digits i and j over the 45 pairs (T5-small; Qwen3.5-0.8B gave -0.862): a negative
value means numerically close digits sit close together. The 45 pairs are not independent
(each digit is in 9), so the interval is a jackknife over digits (leave one digit out, 36
pairs, t interval with k-1 degrees of freedom) and the test of "no ordinal structure" is a
Mantel permutation test: relabel the digits at random and count how often the correlation
is at least as negative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from scipy import stats

from terrain.bootstrap import Interval
from terrain.measures.representation import unit_rows

__all__ = ["DigitManifold", "digit_manifold"]


@dataclass(frozen=True)
class DigitManifold:
    """Correlation of |i - j| with the cosine of digits i and j, and its companions."""

    correlation: float
    interval: Interval  # jackknife over digits
    mantel_p: float  # one-sided: share of relabelings with a correlation <= the observed
    n_permutations: int
    adjacent_mean: float  # mean cosine of pairs with |i - j| = 1
    nonadjacent_mean: float  # mean cosine of pairs with |i - j| > 1
    cosine: NDArray[np.float64] = field(repr=False, compare=False)

    @property
    def gap(self) -> float:
        return self.adjacent_mean - self.nonadjacent_mean

    def as_dict(self) -> dict[str, Any]:
        return {
            "correlation": float(self.correlation),
            "interval": self.interval.as_dict(),
            "mantel_p": float(self.mantel_p),
            "n_permutations": int(self.n_permutations),
            "adjacent_mean": float(self.adjacent_mean),
            "nonadjacent_mean": float(self.nonadjacent_mean),
            "gap": float(self.gap),
            "cosine": [[float(v) for v in row] for row in self.cosine],
        }


def _pearson_rows(x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    """Pearson correlation of each row of x (B, n) with y (n,) or the rows of y (B, n)."""
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    num = np.sum(xc * yc, axis=-1)
    den = np.sqrt(np.sum(xc * xc, axis=-1) * np.sum(yc * yc, axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(num / den, dtype=np.float64)


def digit_manifold(
    vectors: torch.Tensor | NDArray[Any],
    *,
    seed: int = 0,
    n_permutations: int = 9999,
    confidence: float = 0.95,
) -> DigitManifold:
    """The digit manifold of k >= 4 ordered items (rows of `vectors`, item i = digit i)."""
    u = unit_rows(vectors)
    k = u.shape[0]
    if k < 4:
        raise ValueError(f"the digit manifold needs at least 4 ordered items, got {k}")
    cos = u @ u.T
    iu, ju = np.triu_indices(k, 1)
    pair_cos = cos[iu, ju]
    dist = np.abs(iu - ju).astype(np.float64)
    r = float(_pearson_rows(dist, pair_cos))

    # Jackknife over items: drop item m and every pair that contains it.
    leave_out = np.array(
        [float(_pearson_rows(dist[keep], pair_cos[keep])) for keep in _pairs_without(iu, ju, k)]
    )
    mean_lo = leave_out.mean()
    se = math.sqrt((k - 1) / k * float(np.sum((leave_out - mean_lo) ** 2)))
    t = float(stats.t.ppf(0.5 + confidence / 2.0, k - 1))
    interval = Interval(
        max(-1.0, r - t * se), min(1.0, r + t * se), confidence, f"jackknife-over-items t({k - 1})"
    )

    rng = np.random.default_rng(seed)
    labels = np.argsort(rng.random((n_permutations, k)), axis=1)
    perm_dist = np.abs(labels[:, iu] - labels[:, ju]).astype(np.float64)
    perm_r = _pearson_rows(perm_dist, pair_cos)
    p = (1.0 + float(np.sum(perm_r <= r + 1e-12))) / (n_permutations + 1.0)

    adjacent = dist == 1
    return DigitManifold(
        correlation=r,
        interval=interval,
        mantel_p=p,
        n_permutations=n_permutations,
        adjacent_mean=float(pair_cos[adjacent].mean()),
        nonadjacent_mean=float(pair_cos[~adjacent].mean()),
        cosine=cos,
    )


def _pairs_without(iu: NDArray[Any], ju: NDArray[Any], k: int) -> list[NDArray[np.bool_]]:
    return [(iu != m) & (ju != m) for m in range(k)]
