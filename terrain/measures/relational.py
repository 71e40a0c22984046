"""Relational alignment (seed notebook §2, §3): does the cosine of two representations follow
a reference similarity of the two items (WordNet path or Wu-Palmer similarity of synsets)?

Pure functions on arrays: vectors (N, D), similarity matrices (N, N), pair indices.

Statistics, per the research:
- Pearson and Spearman correlation of cosine with similarity over seeded random pairs, with
  percentile-bootstrap intervals over pairs. A model and its null are resampled with the
  same draws, so the interval of their difference is paired. Pairs share items, so these
  intervals are narrower than a resampling of items would give; the multi-seed stability
  run (fresh items and pairs per seed, terrain/measures/seed_stability.py) shows the
  between-sample spread.
- The mean cosine in each similarity band (the research's six bands), with intervals.

The pairs and the correlations under resamples (without re-sorting) come from
terrain/measures/pairs.py; the WordNet hierarchy (hypernym chains, clustering by label) is
measured in terrain/measures/hierarchy.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from terrain.bootstrap import Interval, count_bootstrap, percentile_interval
from terrain.measures.pairs import ResampledSpearman, pair_cosines, sample_pairs

__all__ = [
    "BANDS",
    "HIGH_BAND",
    "LOW_BAND",
    "Alignment",
    "AlignmentComparison",
    "BandMean",
    "Correlation",
    "band_mask",
    "pair_statistics",
    "relational_alignment",
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


@dataclass(frozen=True)
class _PairStatistics:
    """Every statistic of `relational_alignment`, for any weights, in one pass per chunk.

    Pearson correlations, gradients and band means are ratios of weighted sums, so one
    matrix product of the weights with a fixed matrix of columns gives all of them;
    Spearman needs the ranks of each resample (see `ResampledSpearman`).
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
        spearman: dict[str, ResampledSpearman],
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

    def spearman_engines(self) -> dict[str, ResampledSpearman]:
        return {m: ResampledSpearman(x, self.sims) for m, x in self.cos.items()}


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
