"""Relational alignment (seed notebook §2, §3): does the cosine of two representations follow
a reference similarity of the two items (WordNet path or Wu-Palmer similarity of synsets)?

Pure functions on arrays: vectors (N, D), similarity matrices (N, N), pair and chain indices.

Statistics, per the research:
- Pearson and Spearman correlation of cosine with similarity over seeded random pairs, with
  percentile-bootstrap intervals over pairs. A model and its null are resampled with the
  same draws, so the interval of their difference is paired. Pairs share items, so these
  intervals are narrower than a resampling of items would give; the multi-seed stability
  run (fresh items and pairs per seed) shows the between-sample spread.
- The mean cosine in each similarity band (the research's six bands), with intervals.
- The decay of cosine along hypernym chains: mean cos(item, its k-th first hypernym) for
  k = 1 ... K on the same chains, and decay = depth 1 minus depth K.
- Clustering by label (WordNet lexicographer file): mean cosine of same-label pairs minus
  different-label pairs, with a bootstrap over items.

Speed. Bootstrap Spearman correlations never re-sort: a resample is a vector of counts w,
and the average rank of a value in the resample is (weight of the smaller values) +
(w_group + 1) / 2, a cumulative sum over the values sorted once. Spearman is then a
weighted Pearson correlation of those ranks, exactly what scipy's spearmanr gives on the
materialised resample (ties included). The seed loop of `seed_stability` is vectorised:
every seed's items and pairs are drawn first, then all correlations are computed at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from scipy import stats

from terrain.bootstrap import (
    Interval,
    count_bootstrap,
    percentile_interval,
    resample_counts,
)
from terrain.measures.representation import unit_rows
from terrain.measures.simplex import sample_simplex_indices, simplex_volumes
from terrain.stats import coefficient_of_variation

__all__ = [
    "BANDS",
    "Alignment",
    "AlignmentComparison",
    "BandMean",
    "ChainDecay",
    "Correlation",
    "LabelLift",
    "SeedSummary",
    "Stability",
    "band_mask",
    "chain_decay",
    "label_lift",
    "pair_cosines",
    "pair_statistics",
    "relational_alignment",
    "sample_pairs",
    "seed_stability",
    "weighted_pearson",
    "weighted_ranks",
    "weighted_spearman",
]

BANDS: tuple[tuple[float, float], ...] = (
    (0.9, 1.0),
    (0.5, 0.9),
    (0.25, 0.5),
    (0.1, 0.25),
    (0.05, 0.1),
    (0.0, 0.05),
)
"""The research's similarity bands: [lo, hi) for lo > 0, (0, hi] for the lowest."""

HIGH_BAND = 0.25  # the stability run's "high" similarity: >= 0.25
LOW_BAND = 0.10  # and its "low": < 0.10
_GRAM_MAX_ROWS = 4096  # pair cosines from an N x N Gram matrix up to here (128 MiB)


# --- building blocks ------------------------------------------------------------------


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


# --- correlation with a reference similarity -------------------------------------------


@dataclass(frozen=True)
class Correlation:
    pearson: float
    spearman: float
    pearson_interval: Interval
    spearman_interval: Interval
    n_pairs: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "pearson": float(self.pearson),
            "spearman": float(self.spearman),
            "pearson_interval": self.pearson_interval.as_dict(),
            "spearman_interval": self.spearman_interval.as_dict(),
            "n_pairs": int(self.n_pairs),
        }


@dataclass(frozen=True)
class BandMean:
    low: float
    high: float
    n: int
    mean: float  # NaN when fewer than min_count pairs fall in the band
    interval: Interval | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "band": [self.low, self.high],
            "n": int(self.n),
            "mean": None if math.isnan(self.mean) else float(self.mean),
            "interval": self.interval.as_dict() if self.interval else None,
        }


def band_mask(sim: NDArray[Any], low: float, high: float) -> NDArray[np.bool_]:
    """The research's band membership: [low, high) for low > 0, (0, high] for low = 0."""
    if low > 0:
        return np.asarray((sim >= low) & (sim < high))
    return np.asarray((sim > low) & (sim <= high))


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


class _Spearman:
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


@dataclass(frozen=True)
class _PairStatistics:
    """Every statistic of `relational_alignment`, for any weights, in one pass per chunk.

    Pearson correlations, gradients and band means are ratios of weighted sums, so one
    matrix product of the weights with a fixed matrix of columns gives all of them;
    Spearman needs the ranks of each resample (see `_Spearman`).
    """

    cos: dict[str, NDArray[np.float64]]
    sims: dict[str, NDArray[np.float64]]
    bands: tuple[tuple[float, float], ...]

    def columns(self) -> tuple[NDArray[np.float64], dict[tuple[str, ...], int]]:
        cols: list[NDArray[np.float64]] = []
        where: dict[tuple[str, ...], int] = {}

        def add(key: tuple[str, ...], values: NDArray[Any]) -> None:
            where[key] = len(cols)
            cols.append(np.asarray(values, dtype=np.float64))

        # centred by the full-sample mean: no cancellation in the weighted moments
        xc = {m: x - x.mean() for m, x in self.cos.items()}
        yc = {s: y - y.mean() for s, y in self.sims.items()}
        for m, x in xc.items():
            add(("x", m), x)
            add(("xx", m), x * x)
        for s, y in yc.items():
            add(("y", s), y)
            add(("yy", s), y * y)
            high = self.sims[s] >= HIGH_BAND
            low = self.sims[s] < LOW_BAND
            add(("high", s), high)
            add(("low", s), low)
            for b, (lo, hi) in enumerate(self.bands):
                add(("band", s, str(b)), band_mask(self.sims[s], lo, hi))
            for m, x in xc.items():
                add(("xy", m, s), x * y)
                add(("xhigh", m, s), self.cos[m] * high)
                add(("xlow", m, s), self.cos[m] * low)
                for b, (lo, hi) in enumerate(self.bands):
                    add(("xband", m, s, str(b)), self.cos[m] * band_mask(self.sims[s], lo, hi))
        return np.stack(cols, axis=1), where

    def __call__(
        self,
        w: NDArray[Any],
        matrix: NDArray[np.float64],
        where: dict[tuple[str, ...], int],
        spearman: dict[str, _Spearman],
    ) -> dict[tuple[str, ...], NDArray[np.float64]]:
        n = w.shape[1]
        sums = w.astype(np.float64) @ matrix  # (B, columns)

        def col(*key: str) -> NDArray[np.float64]:
            return np.asarray(sums[:, where[key]], dtype=np.float64)

        out: dict[tuple[str, ...], NDArray[np.float64]] = {}
        # resamples in float32 (counts and ranks stay exact integers and halves below 2^24);
        # the sample itself (one row) in float64
        w32 = w.astype(np.float32 if w.shape[0] > 1 else np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            for m in self.cos:
                mx = col("x", m) / n
                vx = col("xx", m) / n - mx * mx
                rho = spearman[m](w32)
                for s in self.sims:
                    my = col("y", s) / n
                    vy = col("yy", s) / n - my * my
                    cov = col("xy", m, s) / n - mx * my
                    out[(m, s, "pearson")] = cov / np.sqrt(vx * vy)
                    out[(m, s, "spearman")] = rho[s]
                    high = col("xhigh", m, s) / col("high", s)
                    out[(m, s, "gradient")] = high - col("xlow", m, s) / col("low", s)
                    for b in range(len(self.bands)):
                        key = ("band", s, str(b))
                        out[(m, s, "band", str(b))] = col("xband", m, s, str(b)) / col(*key)
        return out

    def spearman_engines(self) -> dict[str, _Spearman]:
        return {m: _Spearman(x, self.sims) for m, x in self.cos.items()}


@dataclass(frozen=True)
class Alignment:
    """Correlations and band means of one model's cosines with each reference similarity."""

    correlations: dict[str, Correlation]  # similarity name -> correlation
    bands: dict[str, list[BandMean]]  # similarity name -> band means
    gradient: dict[str, float]  # similarity name -> high - low band mean cosine
    gradient_interval: dict[str, Interval]
    n_items: int
    n_pairs: int
    seed: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "correlations": {k: c.as_dict() for k, c in self.correlations.items()},
            "bands": {k: [b.as_dict() for b in v] for k, v in self.bands.items()},
            "gradient": {k: float(v) for k, v in self.gradient.items()},
            "gradient_interval": {k: v.as_dict() for k, v in self.gradient_interval.items()},
            "n_items": int(self.n_items),
            "n_pairs": int(self.n_pairs),
            "seed": int(self.seed),
        }


@dataclass(frozen=True)
class AlignmentComparison:
    """A model and its null on the same pairs, with paired intervals of the differences."""

    model: Alignment
    null: Alignment
    spearman_difference: dict[str, Interval]  # similarity name -> model - null
    pearson_difference: dict[str, Interval]
    gradient_difference: dict[str, Interval]
    pairs: NDArray[np.int64] = field(repr=False, compare=False)
    model_cosines: NDArray[np.float64] = field(repr=False, compare=False)
    null_cosines: NDArray[np.float64] = field(repr=False, compare=False)
    similarities: dict[str, NDArray[np.float64]] = field(repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.as_dict(),
            "null": self.null.as_dict(),
            "spearman_difference": {k: v.as_dict() for k, v in self.spearman_difference.items()},
            "pearson_difference": {k: v.as_dict() for k, v in self.pearson_difference.items()},
            "gradient_difference": {k: v.as_dict() for k, v in self.gradient_difference.items()},
        }


def pair_statistics(
    cosines: Mapping[str, NDArray[Any]],
    similarities: Mapping[str, NDArray[Any]],
    weights: NDArray[Any],
    *,
    bands: Sequence[tuple[float, float]] = BANDS,
) -> dict[tuple[str, ...], NDArray[np.float64]]:
    """The statistics of `relational_alignment` under each row of `weights` (B, n_pairs).

    Keys: (cosine name, similarity name, "pearson" | "spearman" | "gradient") and
    (cosine name, similarity name, "band", band index). Rows of weights must be resample
    counts summing to n_pairs (or all ones: the sample itself).
    """
    engine = _PairStatistics(
        {k: np.asarray(v, dtype=np.float64) for k, v in cosines.items()},
        {k: np.asarray(v, dtype=np.float64) for k, v in similarities.items()},
        tuple(bands),
    )
    matrix, where = engine.columns()
    return engine(np.asarray(weights), matrix, where, engine.spearman_engines())


def relational_alignment(
    model_vectors: torch.Tensor | NDArray[Any],
    null_vectors: torch.Tensor | NDArray[Any],
    similarity: Mapping[str, NDArray[Any]],
    *,
    n_pairs: int = 20_000,
    seed: int = 0,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    bands: Sequence[tuple[float, float]] = BANDS,
    min_band_count: int = 10,
) -> AlignmentComparison:
    """Cosine of the vectors of N items against each (N, N) similarity, model beside null.

    Pairs: `n_pairs` seeded random ordered pairs of distinct items (similarity[i, j] is
    read for pair (i, j), so an asymmetric similarity such as NLTK's Wu-Palmer is read in
    the order NLTK would be called). Every interval comes from the same `n_bootstrap`
    resamples of the pairs, so model - null differences are paired. A band with fewer
    than `min_band_count` pairs gets no mean (NaN), as in the research.
    """
    n_items = int(model_vectors.shape[0])
    if int(null_vectors.shape[0]) != n_items:
        raise ValueError(
            f"model and null vectors must cover the same items, got {n_items} and "
            f"{int(null_vectors.shape[0])}"
        )
    if n_pairs < 3:
        raise ValueError(f"a correlation needs at least 3 pairs, got n_pairs={n_pairs}")
    rng = np.random.default_rng(seed)
    pairs = sample_pairs(n_items, n_pairs, rng)
    cos = {"model": pair_cosines(model_vectors, pairs), "null": pair_cosines(null_vectors, pairs)}
    sims = {
        k: np.asarray(v, dtype=np.float64)[pairs[:, 0], pairs[:, 1]] for k, v in similarity.items()
    }
    engine = _PairStatistics(cos, sims, tuple(bands))
    matrix, where = engine.columns()
    ranks = engine.spearman_engines()
    point = engine(np.ones((1, n_pairs)), matrix, where, ranks)
    keys = list(point)

    def resampled(w: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
        stats_of_w = engine(w, matrix, where, ranks)
        return tuple(stats_of_w[k] for k in keys)

    boot = count_bootstrap(resampled, n_pairs, n_bootstrap, seed + 1)
    dist = dict(zip(keys, boot, strict=True))
    method = f"bootstrap-percentile({n_bootstrap}) over pairs"
    paired = f"paired {method}"

    def interval(key: tuple[str, ...]) -> Interval:
        return percentile_interval(dist[key], confidence, method)

    def difference(stat: str) -> dict[str, Interval]:
        return {
            s: percentile_interval(
                dist[("model", s, stat)] - dist[("null", s, stat)], confidence, paired
            )
            for s in sims
        }

    def alignment(m: str) -> Alignment:
        bands_out: dict[str, list[BandMean]] = {}
        for s, sim in sims.items():
            rows = []
            for b, (lo, hi) in enumerate(bands):
                count = int(band_mask(sim, lo, hi).sum())
                key = (m, s, "band", str(b))
                if count < min_band_count:
                    rows.append(BandMean(lo, hi, count, math.nan, None))
                else:
                    rows.append(BandMean(lo, hi, count, float(point[key][0]), interval(key)))
            bands_out[s] = rows
        return Alignment(
            correlations={
                s: Correlation(
                    pearson=float(point[(m, s, "pearson")][0]),
                    spearman=float(point[(m, s, "spearman")][0]),
                    pearson_interval=interval((m, s, "pearson")),
                    spearman_interval=interval((m, s, "spearman")),
                    n_pairs=n_pairs,
                )
                for s in sims
            },
            bands=bands_out,
            gradient={s: float(point[(m, s, "gradient")][0]) for s in sims},
            gradient_interval={s: interval((m, s, "gradient")) for s in sims},
            n_items=n_items,
            n_pairs=n_pairs,
            seed=seed,
        )

    return AlignmentComparison(
        model=alignment("model"),
        null=alignment("null"),
        spearman_difference=difference("spearman"),
        pearson_difference=difference("pearson"),
        gradient_difference=difference("gradient"),
        pairs=pairs,
        model_cosines=cos["model"],
        null_cosines=cos["null"],
        similarities=sims,
    )


# --- hypernym chains ------------------------------------------------------------------


@dataclass(frozen=True)
class ChainDecay:
    """Mean cosine of an item with its k-th hypernym, k = 1 ... K, over the same chains."""

    depth_means: NDArray[np.float64]  # (K,)
    depth_low: NDArray[np.float64]
    depth_high: NDArray[np.float64]
    decay: float  # depth 1 minus depth K
    interval: Interval  # of the decay, paired bootstrap over chains
    n_chains: int
    bootstrap: NDArray[np.float64] = field(repr=False, compare=False)  # decay per resample

    def as_dict(self) -> dict[str, Any]:
        return {
            "depth_means": [float(v) for v in self.depth_means],
            "depth_low": [float(v) for v in self.depth_low],
            "depth_high": [float(v) for v in self.depth_high],
            "decay": float(self.decay),
            "interval": self.interval.as_dict(),
            "n_chains": int(self.n_chains),
        }


def chain_decay(
    vectors: torch.Tensor | NDArray[Any],
    roots: NDArray[np.int64],
    chains: NDArray[np.int64],
    *,
    seed: int = 0,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
) -> ChainDecay:
    """roots: (C,) row of each chain's item; chains: (C, K) rows of its 1st ... K-th hypernym."""
    if chains.ndim != 2 or chains.shape[0] != roots.shape[0] or chains.shape[0] < 2:
        raise ValueError(
            f"need (C,) roots and (C, K) chains with C >= 2, got {roots.shape}, {chains.shape}"
        )
    u = unit_rows(vectors)
    cos = np.einsum("cd,ckd->ck", u[roots], u[chains])  # (C, K)
    c = cos.shape[0]
    w = resample_counts(c, n_bootstrap, np.random.default_rng(seed))
    boot = (w @ cos) / c  # (B, K)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha], axis=0)
    means = cos.mean(axis=0)
    return ChainDecay(
        depth_means=means,
        depth_low=np.asarray(low, dtype=np.float64),
        depth_high=np.asarray(high, dtype=np.float64),
        decay=float(means[0] - means[-1]),
        interval=percentile_interval(
            boot[:, 0] - boot[:, -1], confidence, f"bootstrap-percentile({n_bootstrap}) over chains"
        ),
        n_chains=c,
        bootstrap=boot[:, 0] - boot[:, -1],
    )


# --- clustering by label --------------------------------------------------------------


@dataclass(frozen=True)
class LabelLift:
    """Same-label minus different-label mean pair cosine, and each label's intra cosine."""

    lift: float
    interval: Interval
    same: float
    different: float
    per_label: dict[str, tuple[int, float]]  # label -> (items, intra mean cosine)
    n_items: int
    bootstrap: NDArray[np.float64] = field(repr=False, compare=False)  # lift per resample

    def as_dict(self) -> dict[str, Any]:
        return {
            "lift": float(self.lift),
            "interval": self.interval.as_dict(),
            "same": float(self.same),
            "different": float(self.different),
            "per_label": {k: {"n": n, "intra": float(v)} for k, (n, v) in self.per_label.items()},
            "n_items": int(self.n_items),
        }


def _label_sums(
    u: NDArray[np.float64], groups: list[NDArray[np.int64]], w: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(same num, same den, all num, all den) of pair cosines under weights w (B, n)."""
    self_w = np.sum(w * w * np.sum(u * u, axis=1), axis=1)  # |u_i|^2: 1, or 0 for a zero row
    total = w.sum(axis=1)
    s = w @ u
    all_num = np.einsum("bd,bd->b", s, s) - self_w
    all_den = total * total - np.sum(w * w, axis=1)
    same_num = np.zeros(w.shape[0])
    same_den = np.zeros(w.shape[0])
    for idx in groups:
        wk = w[:, idx]
        sk = wk @ u[idx]
        tk = wk.sum(axis=1)
        sq = np.sum(wk * wk, axis=1)
        same_num += np.einsum("bd,bd->b", sk, sk) - np.sum(wk * wk * np.sum(u[idx] ** 2, 1), 1)
        same_den += tk * tk - sq
    return same_num, same_den, all_num, all_den


def label_lift(
    vectors: torch.Tensor | NDArray[Any],
    labels: Sequence[str],
    *,
    min_size: int = 10,
    seed: int = 0,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
) -> LabelLift:
    """Mean cosine of same-label pairs minus different-label pairs (labels with >= min_size
    items only), with a bootstrap over items; per label, its intra mean cosine."""
    u_all = unit_rows(vectors)
    names, inverse, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    keep_label = counts >= min_size
    if keep_label.sum() < 2:
        raise ValueError(f"need at least 2 labels with >= {min_size} items, got {keep_label.sum()}")
    keep = keep_label[inverse]
    u = u_all[keep]
    lab = inverse[keep]
    groups = [np.flatnonzero(lab == g) for g in np.flatnonzero(keep_label)]

    def split(w: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
        sn, sd, an, ad = _label_sums(u, groups, w)
        same = sn / sd
        diff = (an - sn) / (ad - sd)
        return same - diff, same, diff

    lift, same, diff = (float(v[0]) for v in split(np.ones((1, len(u)))))
    boot = count_bootstrap(lambda w: split(w)[:1], len(u), n_bootstrap, seed)[0]
    per_label: dict[str, tuple[int, float]] = {}
    for g, idx in zip(np.flatnonzero(keep_label), groups, strict=True):
        s = u[idx].sum(axis=0)
        n = len(idx)
        per_label[str(names[g])] = (n, float((s @ s - np.sum(u[idx] ** 2)) / (n * (n - 1))))
    return LabelLift(
        lift=lift,
        interval=percentile_interval(
            boot, confidence, f"bootstrap-percentile({n_bootstrap}) over items"
        ),
        same=same,
        different=diff,
        per_label=per_label,
        n_items=len(u),
        bootstrap=boot,
    )


# --- stability over seeds -------------------------------------------------------------


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
