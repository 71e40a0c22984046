"""The Marchenko–Pastur bulk of a weight matrix's ESD, its Tracy–Widom edge and its spikes.

For W of shape N × M (N ≥ M, either orientation) with i.i.d. entries of variance v, the
M eigenvalues λ = σ² of WᵀW divided by N·v follow Marchenko–Pastur with ratio
y = M/N = 1/Q (WeightWatcher's Q = N/M) on [(1 − √y)², (1 + √y)²], so

    λ± = v · (√N ± √M)²                                             (the bulk edges)

and the largest eigenvalue fluctuates around λ+ on the Tracy–Widom scale (Johnstone 2001,
"On the distribution of the largest eigenvalue in principal components analysis", Thm 1.1,
real case, whose √(N − 1) is √N here; the difference is O(1/N) of the scale):

    s_TW = v · (√N + √M) · (1/√N + 1/√M)^(1/3),   (λ_max − λ+)/s_TW → TW₁.

TW₁ has mean −1.2065 and sd 1.2680; its quantiles (`TW1_QUANTILES`) were computed from the
Hastings–McLeod solution of Painlevé II. Simulated Gaussian matrices (512², 768×192,
1536×384; 300 each) gave sd 1.25–1.28 and mean −1.28 to −1.43 for (λ_max − λ+)/s_TW.

Entry variance, robustly from the bulk: v̂ is the least-squares scale matching the sorted
eigenvalues to the MP quantiles, λ_(i) ≈ N·v·q_y((i + ½)/M), over the middle ranks only
(plotting positions `BULK_RANKS` = 5 %–75 %). Spikes at the top (up to a quarter of the
spectrum) do not enter the fit, and a rank-k perturbation moves each bulk eigenvalue by at
most k ranks (interlacing of singular values). On Gaussian matrices v̂ errs by 0.45 % (sd;
384 × 384) or 0.2 % (1536 × 384), against 0.9 % and 0.35 % for the median eigenvalue
alone, and widens the spread of (λ_max − λ̂+)/ŝ_TW from 1.27 to 1.3–1.4. For a trained,
heavy-tailed matrix it is the MP law that matches the middle of the spectrum, and
everything above its edge counts as spikes.

Spikes: eigenvalues above λ+ + t·s_TW, with t = `tw_scales` (default 3.2722, the 99.9 %
quantile of TW₁: with the true variance an i.i.d. matrix shows a false spike once in a
thousand, with v̂ a little more often); the spike mass share is their Σλ over Σλ.

WeightWatcher (`WeightWatcher.mp_fit`, `RMT_Util.fit_density_with_range`, only with
`mp_fit=True`) instead rescales the eigenvalues to mean 1, fits σ by a brute-force search
of the residual between MP's density and a kernel density estimate (bandwidth 0.1), takes
bulk_max = (σ(1 + 1/√Q))² and counts as spikes (`num_spikes`) the eigenvalues above
bulk_max + √(bulk_max^(2/3)·M^(−2/3)/√Q), a TW-like margin; its `bulk_max` column is in
λ units after undoing the rescaling. Not reproduced here: slower, and a density fit
is pulled by the spikes and by the tail it is meant to separate.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray
from scipy import integrate

from terrain.measures.esd.common import (
    Eigenvalues,
    PerRow,
    eigenvalue_rows,
    json_float,
    matrix_dims,
    measurable,
    one_spectrum,
    row_problem,
    statuses,
)

# Quantiles of the Tracy–Widom law TW₁ (β = 1), from F₁(s) = exp(−½∫ₛ^∞ q)·F₂(s)^½ with
# q the Hastings–McLeod solution of q'' = s·q + 2q³ (integrated from s = 8 with Airy data).
TW1_QUANTILES = {0.90: 0.4501, 0.95: 0.9793, 0.99: 2.0234, 0.999: 3.2722, 0.9999: 4.3594}
DEFAULT_TW_SCALES = TW1_QUANTILES[0.999]
BULK_RANKS = (0.05, 0.75)  # plotting positions of the eigenvalues that fit the variance
MIN_BULK = 8  # fewer eigenvalues give no bulk (WeightWatcher's min_evals is 8 too)
_GRID = 20001


@functools.lru_cache(maxsize=128)
def _mp_cdf(y: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(x, F(x)) of the standard MP law of ratio y ≤ 1 on a grid, x ascending.

    With x = 1 + y + 2√y·cos θ, θ from π to 0, the density becomes 2 sin²θ/(π x(θ)) dθ,
    smooth on the whole interval (at y = 1 it tends to (1 − cos θ)/π at x = 0), so the
    cumulative trapezoid rule is accurate to about 1e-8.
    """
    theta = np.linspace(math.pi, 0.0, _GRID)
    x = np.maximum(1.0 + y + 2.0 * math.sqrt(y) * np.cos(theta), 0.0)
    # At y = 1: 2 sin²θ/(π·2(1 + cos θ)) = (1 − cos θ)/π, without 0/0 at θ = π.
    square = y == 1.0
    dens = (1.0 - np.cos(theta)) / math.pi if square else 2 * np.sin(theta) ** 2 / (math.pi * x)
    cdf = integrate.cumulative_trapezoid(dens, -theta, initial=0.0)
    return x, cdf / cdf[-1]


def mp_quantiles(y: float, p: npt.ArrayLike) -> NDArray[np.float64]:
    """Quantiles of the standard Marchenko–Pastur law of ratio y = min/max ∈ (0, 1]
    (the law of λ/(N·v)), at probabilities p."""
    if not 0.0 < y <= 1.0:
        raise ValueError(f"the MP ratio y = min/max must be in (0, 1], got {y}")
    x, cdf = _mp_cdf(float(y))
    return np.interp(np.asarray(p, dtype=np.float64), cdf, x)


def mp_edges(shape: Sequence[int], variance: float) -> tuple[float, float]:
    """(λ−, λ+) = v·(√N ∓ √M)² for a matrix of `shape` with entry variance v."""
    big, small = max(shape), min(shape)
    return (
        variance * (math.sqrt(big) - math.sqrt(small)) ** 2,
        variance * (math.sqrt(big) + math.sqrt(small)) ** 2,
    )


def tracy_widom_scale(shape: Sequence[int], variance: float) -> float:
    """s_TW = v·(√N + √M)·(1/√N + 1/√M)^(1/3): the scale of λ_max's fluctuations."""
    root_n, root_m = math.sqrt(max(shape)), math.sqrt(min(shape))
    return variance * (root_n + root_m) * math.cbrt(1.0 / root_n + 1.0 / root_m)


@dataclass(frozen=True)
class MPBulk:
    """The MP bulk of one matrix's ESD and the spikes above it."""

    n: int  # N, the larger dimension
    m: int  # M, the smaller: the number of eigenvalues
    q: float  # Q = N/M (WeightWatcher's)
    variance: float  # v̂, entry variance of the MP law matching the bulk
    lambda_minus: float
    lambda_plus: float  # bulk edge v̂(√N + √M)²
    tw_scale: float  # s_TW at v̂
    tw_scales: float  # t: the margin in TW scales
    threshold: float  # λ+ + t·s_TW
    lambda_max: float
    edge_ratio: float  # λ_max/λ+
    n_spikes: int  # eigenvalues above the threshold
    spike_mass_share: float  # their Σλ over Σλ
    status: str

    def as_dict(self) -> dict[str, float | int | str | None]:
        return {
            "n": self.n,
            "m": self.m,
            "q": self.q,
            "variance": json_float(self.variance),
            "lambda_minus": json_float(self.lambda_minus),
            "lambda_plus": json_float(self.lambda_plus),
            "tw_scale": json_float(self.tw_scale),
            "tw_scales": self.tw_scales,
            "threshold": json_float(self.threshold),
            "lambda_max": json_float(self.lambda_max),
            "edge_ratio": json_float(self.edge_ratio),
            "n_spikes": self.n_spikes,
            "spike_mass_share": json_float(self.spike_mass_share),
            "status": self.status,
        }


@dataclass(frozen=True)
class MPBulkRows(PerRow[MPBulk]):
    """MP bulks of L matrices of one shape, one entry per row."""

    n: int
    m: int
    tw_scales: float
    variance: NDArray[np.float64]
    lambda_minus: NDArray[np.float64]
    lambda_plus: NDArray[np.float64]
    tw_scale: NDArray[np.float64]
    threshold: NDArray[np.float64]
    lambda_max: NDArray[np.float64]
    edge_ratio: NDArray[np.float64]
    n_spikes: NDArray[np.int64]
    spike_mass_share: NDArray[np.float64]
    status: tuple[str, ...]

    def row(self, i: int) -> MPBulk:
        return self.pick(MPBulk, i, q=self.n / self.m)


def mp_bulk_rows(
    rows: Eigenvalues, shape: Sequence[int], *, tw_scales: float = DEFAULT_TW_SCALES
) -> MPBulkRows:
    """MP bulk, edge and spikes of an (L, M) stack of eigenvalue rows of `shape` matrices."""
    if not math.isfinite(tw_scales):
        raise ValueError(f"tw_scales must be finite, got {tw_scales}")
    lam, _ = eigenvalue_rows(rows)
    big, small = matrix_dims(shape, lam.shape[1])
    count = lam.shape[0]
    problems: list[str | None] = [row_problem(r) for r in lam]
    if small < MIN_BULK:
        problems = [p or f"{small} eigenvalues, a bulk needs {MIN_BULK}" for p in problems]
    lam, bad = measurable(lam, problems)
    if small < MIN_BULK:
        variance = np.full(count, np.nan)
    else:
        positions = (np.arange(small) + 0.5) / small
        middle = (positions >= BULK_RANKS[0]) & (positions <= BULK_RANKS[1])
        quant = mp_quantiles(small / big, positions[middle]) * big  # E λ_(i) / v
        variance = lam[:, middle] @ quant / (quant @ quant)
    empty = ~bad & (variance <= 0.0)
    for i in np.flatnonzero(empty):
        problems[i] = "the bulk is empty: the eigenvalues at ranks 5 %–75 % are 0"
    bad |= empty
    variance = np.where(bad, np.nan, variance)
    edge_lo, edge_hi = mp_edges(shape, 1.0)
    scale = tracy_widom_scale(shape, 1.0)
    threshold = variance * (edge_hi + tw_scales * scale)
    spikes = lam > threshold[:, None]  # NaN thresholds compare False
    total = lam.sum(axis=1)
    top = np.where(bad, np.nan, lam[:, -1])
    return MPBulkRows(
        n=big,
        m=small,
        tw_scales=float(tw_scales),
        variance=variance,
        lambda_minus=variance * edge_lo,
        lambda_plus=variance * edge_hi,
        tw_scale=variance * scale,
        threshold=threshold,
        lambda_max=top,
        edge_ratio=top / (variance * edge_hi),
        n_spikes=np.where(bad, 0, spikes.sum(axis=1)).astype(np.int64),
        spike_mass_share=np.where(bad, np.nan, (lam * spikes).sum(axis=1) / total),
        status=statuses(problems),
    )


def mp_bulk(
    eigenvalues: Eigenvalues, shape: Sequence[int], *, tw_scales: float = DEFAULT_TW_SCALES
) -> MPBulk:
    """MP bulk, edge and spikes of one matrix of `shape` from its M eigenvalues λ = σ²."""
    lam = one_spectrum(eigenvalues)
    return mp_bulk_rows(lam, shape, tw_scales=tw_scales).row(0)
