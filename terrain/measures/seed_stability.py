"""Stability of the relational alignment over seeds (seed notebook §13): the statistics of
terrain/measures/relational.py and terrain/measures/hierarchy.py drawn again from fresh
items, pairs, chains and simplices per seed, which shows the between-sample spread that
the bootstrap over pairs (which share items) does not.

Each statistic is summarised over seeds by its mean, sd and a t interval of the mean.

Speed. The seed loop of `seed_stability` is vectorised: every seed's items and pairs are
drawn first, then all correlations are computed at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from scipy import stats

from terrain.bootstrap import Interval
from terrain.measures.pairs import sample_pairs
from terrain.measures.relational import HIGH_BAND, LOW_BAND
from terrain.measures.representation import unit_rows
from terrain.measures.simplex import sample_simplex_indices, simplex_volumes
from terrain.stats import coefficient_of_variation

__all__ = ["SeedSummary", "Stability", "seed_stability"]


@dataclass(frozen=True)
class SeedSummary:
    """One statistic over seeds: mean, sd and a t interval of the mean."""

    values: NDArray[np.float64] = field(repr=False)
    mean: float
    sd: float
    interval: Interval
    minimum: float
    maximum: float

    @classmethod
    def of(cls, values: NDArray[Any], confidence: float = 0.95) -> SeedSummary:
        v = np.asarray(values, dtype=np.float64)
        v = v[~np.isnan(v)]
        n = v.size
        mean = float(v.mean()) if n else math.nan
        sd = float(v.std(ddof=1)) if n > 1 else math.nan
        if n > 1:
            half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * sd / math.sqrt(n)
        else:
            half = math.nan
        interval = Interval(mean - half, mean + half, confidence, f"t interval over {n} seeds")
        lo = float(v.min()) if n else math.nan
        hi = float(v.max()) if n else math.nan
        return cls(v, mean, sd, interval, lo, hi)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "sd": self.sd,
            "interval": self.interval.as_dict(),
            "min": self.minimum,
            "max": self.maximum,
            "n_seeds": int(self.values.size),
        }


@dataclass(frozen=True)
class Stability:
    """Statistics of `seed_stability`, name -> summary over seeds."""

    summaries: dict[str, SeedSummary]
    n_seeds: int
    n_items: int
    n_pairs: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "summaries": {k: v.as_dict() for k, v in self.summaries.items()},
            "n_seeds": int(self.n_seeds),
            "n_items": int(self.n_items),
            "n_pairs": int(self.n_pairs),
        }


def _rows_pearson(x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(
            np.sum(xc * yc, axis=1) / np.sqrt(np.sum(xc * xc, axis=1) * np.sum(yc * yc, axis=1)),
            dtype=np.float64,
        )


def _rows_gradient(cos: NDArray[np.float64], sim: NDArray[np.float64]) -> NDArray[np.float64]:
    high = sim >= HIGH_BAND
    low = sim < LOW_BAND
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(
            np.sum(cos * high, axis=1) / high.sum(axis=1)
            - np.sum(cos * low, axis=1) / low.sum(axis=1),
            dtype=np.float64,
        )


def seed_stability(
    vectors: Mapping[str, torch.Tensor | NDArray[Any]],
    similarity: Mapping[str, NDArray[Any]],
    *,
    n_seeds: int,
    n_items: int,
    n_pairs: int,
    chains: tuple[NDArray[np.int64], NDArray[np.int64]] | None = None,
    n_simplices: int = 0,
    first_seed: int = 0,
    confidence: float = 0.95,
) -> Stability:
    """The alignment statistics over `n_seeds` seeds, all seeds in one vectorised pass.

    Seed s (np.random.default_rng(first_seed + s)) draws `n_items` of the N items (the
    similarity matrices are N x N) without replacement and `n_pairs` pairs of distinct items
    among them, as the research's 50-seed run did; then half of the `chains` (roots (C,),
    rows (C, K) into the vectors) and `n_simplices` 5-item simplices of the N items.
    vectors: name (e.g. "model", "null") -> (rows >= N, D), rows past N serving chains only.
    Cosines come from one (N, N) Gram matrix of unit rows (memory N^2 doubles).

    Statistics, per vector set v and similarity s: `v/s/pearson`, `v/s/spearman`,
    `v/s/gradient` (high minus low band mean cosine); with chains `v/hypernym_decay`; with
    simplices `v/simplex_cv` (the pentachoron CV); for every vector set after the first,
    the paired differences `first-v/s/spearman` and `first-v/hypernym_decay`.
    """
    if n_seeds < 1:
        raise ValueError(f"n_seeds must be >= 1, got {n_seeds}")
    names = list(vectors)
    first = names[0]
    n_total = int(np.asarray(next(iter(similarity.values())).shape)[0])
    if not 2 <= n_items <= n_total:
        raise ValueError(f"n_items must be in [2, {n_total}], got {n_items}")
    units = {k: unit_rows(v) for k, v in vectors.items()}
    rngs = [np.random.default_rng(first_seed + s) for s in range(n_seeds)]
    pairs = np.empty((n_seeds, n_pairs, 2), dtype=np.int64)
    for s, rng in enumerate(rngs):
        items = rng.choice(n_total, size=n_items, replace=False)
        pairs[s] = items[sample_pairs(n_items, n_pairs, rng)]
    i, j = pairs[..., 0], pairs[..., 1]
    cos: dict[str, NDArray[np.float64]] = {}
    for k, u in units.items():
        gram = u[:n_total] @ u[:n_total].T  # one gather serves every seed's pairs
        cos[k] = gram[i, j]
    out: dict[str, NDArray[np.float64]] = {}
    for sname, matrix in similarity.items():
        sim = np.asarray(matrix, dtype=np.float64)[i, j]
        sim_rank = stats.rankdata(sim, axis=1)
        for k in names:
            c = cos[k]
            out[f"{k}/{sname}/pearson"] = _rows_pearson(c, sim)
            out[f"{k}/{sname}/spearman"] = _rows_pearson(stats.rankdata(c, axis=1), sim_rank)
            out[f"{k}/{sname}/gradient"] = _rows_gradient(c, sim)
        for k in names[1:]:
            out[f"{first}-{k}/{sname}/spearman"] = (
                out[f"{first}/{sname}/spearman"] - out[f"{k}/{sname}/spearman"]
            )
    if chains is not None and len(chains[0]) >= 2:
        roots, rows = chains
        take = max(2, len(roots) // 2)
        picked = np.stack([rng.choice(len(roots), size=take, replace=False) for rng in rngs])
        for k, u in units.items():
            # (S, take, K) cosines of each picked root with its hypernyms
            c = np.einsum("std,stkd->stk", u[roots[picked]], u[rows[picked]])
            out[f"{k}/hypernym_decay"] = c[:, :, 0].mean(axis=1) - c[:, :, -1].mean(axis=1)
        for k in names[1:]:
            out[f"{first}-{k}/hypernym_decay"] = (
                out[f"{first}/hypernym_decay"] - out[f"{k}/hypernym_decay"]
            )
    if n_simplices:
        index = [sample_simplex_indices(n_total, n_simplices, rng=rng) for rng in rngs]
        for k, v in vectors.items():
            points = torch.as_tensor(np.asarray(v, dtype=np.float64)[:n_total])
            cvs = []
            for idx in index:
                volumes = simplex_volumes(points, idx)
                cvs.append(float(coefficient_of_variation(volumes[~np.isnan(volumes)])))
            out[f"{k}/simplex_cv"] = np.asarray(cvs)
    return Stability(
        summaries={k: SeedSummary.of(v, confidence) for k, v in out.items()},
        n_seeds=n_seeds,
        n_items=n_items,
        n_pairs=n_pairs,
    )
