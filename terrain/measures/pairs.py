"""Building blocks of the pair statistics (seed notebook §2, §3): seeded random pairs of
items, their cosines, and Pearson and Spearman correlations under weighted resamples.

Pure functions on arrays: vectors (N, D), pair indices (P, 2), and weights (B, n), the
counts of bootstrap resamples (terrain/bootstrap.py) or all ones for the sample itself.

Speed. Bootstrap Spearman correlations never re-sort: a resample is a vector of counts w,
and the average rank of a value in the resample is (weight of the smaller values) +
(w_group + 1) / 2, a cumulative sum over the values sorted once. Spearman is then a
weighted Pearson correlation of those ranks, exactly what scipy's spearmanr gives on the
materialised resample (ties included). `weighted_spearman` is the plain statement of it;
`ResampledSpearman` is the fast one the alignment uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from terrain.measures.representation import unit_rows

__all__ = [
    "ResampledSpearman",
    "pair_cosines",
    "sample_pairs",
    "weighted_pearson",
    "weighted_ranks",
    "weighted_spearman",
]

_GRAM_MAX_ROWS = 4096  # pair cosines from an N x N Gram matrix up to here (128 MiB)


def sample_pairs(n_items: int, n_pairs: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """(n_pairs, 2) ordered pairs of distinct items, uniform, with replacement across pairs.

    The research drew pairs and dropped i == j; here those are redrawn, so that the count
    is exact (the distribution of the kept pairs is the same).
    """
    if n_items < 2:
        raise ValueError(f"pairs need at least 2 items, got {n_items}")
    pairs = rng.integers(0, n_items, size=(n_pairs, 2), dtype=np.int64)
    same = np.flatnonzero(pairs[:, 0] == pairs[:, 1])
    while same.size:
        pairs[same] = rng.integers(0, n_items, size=(same.size, 2), dtype=np.int64)
        same = same[pairs[same, 0] == pairs[same, 1]]
    return pairs


def pair_cosines(vectors: torch.Tensor | NDArray[Any], pairs: NDArray[np.int64]) -> NDArray[Any]:
    """Cosine of each pair of rows (float64): one Gram matrix of unit rows, then a gather."""
    u = unit_rows(vectors)
    if u.shape[0] <= _GRAM_MAX_ROWS:
        return np.asarray((u @ u.T)[pairs[:, 0], pairs[:, 1]], dtype=np.float64)
    return np.asarray(np.einsum("pd,pd->p", u[pairs[:, 0]], u[pairs[:, 1]]), dtype=np.float64)


def weighted_ranks(x: NDArray[Any], weights: NDArray[np.float64]) -> NDArray[np.float64]:
    """Average ranks (1-based) of the values of x in each weighted multiset.

    x: (n,); weights: (B, n) counts. Entry [b, i] is the rank that value x_i gets when item
    i appears weights[b, i] times (ties share their average rank, as scipy's rankdata).
    """
    x = np.asarray(x)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    new_group = np.empty(len(xs), dtype=bool)
    new_group[:1] = True
    new_group[1:] = xs[1:] != xs[:-1]
    starts = np.flatnonzero(new_group)
    group_sorted = np.cumsum(new_group) - 1
    group = np.empty(len(x), dtype=np.int64)
    group[order] = group_sorted
    per_group = np.add.reduceat(weights[:, order], starts, axis=1)
    before = np.cumsum(per_group, axis=1) - per_group
    return np.asarray((before + (per_group + 1.0) / 2.0)[:, group], dtype=np.float64)


def weighted_pearson(
    x: NDArray[Any], y: NDArray[Any], weights: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Pearson correlation of (x, y) under each row of weights (B, n); x, y: (n,) or (B, n)."""
    total = weights.sum(axis=1, keepdims=True)
    mx = np.sum(weights * x, axis=1, keepdims=True) / total
    my = np.sum(weights * y, axis=1, keepdims=True) / total
    dx = x - mx
    dy = y - my
    num = np.sum(weights * dx * dy, axis=1)
    den = np.sqrt(np.sum(weights * dx * dx, axis=1) * np.sum(weights * dy * dy, axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(num / den, dtype=np.float64)


def weighted_spearman(
    x: NDArray[Any], y: NDArray[Any], weights: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Spearman correlation of (x, y) in each weighted multiset (rows of weights)."""
    return weighted_pearson(weighted_ranks(x, weights), weighted_ranks(y, weights), weights)


class _Ties:
    """Sort order of a vector and its tie groups (`group[k]`: group of the k-th smallest)."""

    def __init__(self, x: NDArray[Any]) -> None:
        self.order = np.argsort(x, kind="stable")
        xs = np.asarray(x)[self.order]
        first = np.empty(len(xs), dtype=bool)
        first[:1] = True
        first[1:] = xs[1:] != xs[:-1]
        self.starts = np.flatnonzero(first)
        self.group = np.cumsum(first) - 1
        self.n_groups = len(self.starts)
        self.has_ties = self.n_groups < len(xs)


_ONEHOT_MAX_GROUPS = 32  # a similarity with this few distinct values is summed by matmul


def _centred_ranks(per_group: NDArray[Any], n: int) -> NDArray[Any]:
    """Average rank of each tie group minus the mean rank (n + 1) / 2 (always the mean)."""
    return np.cumsum(per_group, axis=1) - 0.5 * per_group + (0.5 - (n + 1.0) / 2.0)


class ResampledSpearman:
    """Spearman correlations of one vector x with several y, under weighted resamples.

    With counts w (summing to n), the values of a tie group (in sorted order) occupy the
    ranks after the weight of the smaller groups, so their average rank is (weight of the
    smaller groups) + (group weight + 1) / 2: one cumulative sum, no sort per resample. The
    mean rank is always (n + 1) / 2, so ranks are centred by that constant and the
    correlation is sum(w r_x r_y) / sqrt(sum(w r_x^2) sum(w r_y^2)), exactly scipy's
    spearmanr of the materialised resample. Everything runs in x's sorted order; a y with
    few distinct values (WordNet similarities) enters through a one-hot matrix product.
    """

    def __init__(self, x: NDArray[Any], ys: Mapping[str, NDArray[Any]]) -> None:
        self.n = len(x)
        self.x = _Ties(x)
        self.ys: dict[str, tuple[_Ties, NDArray[np.float32] | None]] = {}
        for name, y in ys.items():
            ties = _Ties(np.asarray(y)[self.x.order])
            onehot = None
            if ties.n_groups <= _ONEHOT_MAX_GROUPS:
                onehot = np.zeros((self.n, ties.n_groups), dtype=np.float32)
                onehot[ties.order, ties.group] = 1.0  # item (in x order) -> its y group
            self.ys[name] = (ties, onehot)

    def __call__(self, w: NDArray[Any]) -> dict[str, NDArray[np.float64]]:
        n = self.n
        ws = w[:, self.x.order]
        per = np.add.reduceat(ws, self.x.starts, axis=1) if self.x.has_ties else ws
        rank = _centred_ranks(per, n)
        ss_x = np.einsum("bg,bg->b", per, rank * rank, dtype=np.float64)
        item_rank = rank[:, self.x.group] if self.x.has_ties else rank
        w_rank = ws * item_rank
        out: dict[str, NDArray[np.float64]] = {}
        for name, (ties, onehot) in self.ys.items():
            if onehot is not None:
                per_y = ws @ onehot
                rank_y = _centred_ranks(per_y, n)
                cross = np.einsum("bg,bg->b", w_rank @ onehot, rank_y, dtype=np.float64)
            else:
                per_y = np.add.reduceat(ws[:, ties.order], ties.starts, axis=1)
                rank_y = _centred_ranks(per_y, n)
                item_rank_y = np.empty_like(ws)
                item_rank_y[:, ties.order] = rank_y[:, ties.group]
                cross = np.einsum("bn,bn->b", w_rank, item_rank_y, dtype=np.float64)
            ss_y = np.einsum("bg,bg->b", per_y, rank_y * rank_y, dtype=np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[name] = cross / np.sqrt(ss_x * ss_y)
        return out
