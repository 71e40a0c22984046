"""Bootstrap resampling and percentile intervals: the project's only bootstrap.

Two mechanisms, both percentile intervals (not BCa: BCa's jackknife is O(n^2) and samples
here reach 10^5 values):

- `bootstrap_interval`: scipy's percentile bootstrap of a vectorised statistic of one
  sample (`statistic(x, axis=-1)`, e.g. the CV of simplex volumes), in memory-bounded
  batches.
- Count-vector resamples (`resample_counts`, `count_bootstrap`) for the weighted
  statistics of pairs and items (correlations, band means, mean pair cosines, lifts): a
  resample of n items is the vector of how often each item is drawn, and the statistic
  takes those counts as weights. Means and moments are then one matrix product, and ranks
  a cumulative sum over the values sorted once, instead of materialising and re-sorting
  every resample (terrain/measures/pairs.py). A model and its null resampled with the
  same counts give paired draws, whose difference has a paired interval
  (`paired_interval`). `percentile_interval` reads an interval off the draws
  (`percentile_bounds`: per column, for several statistics at once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats

__all__ = [
    "Interval",
    "bootstrap_interval",
    "count_bootstrap",
    "paired_interval",
    "percentile_bounds",
    "percentile_interval",
    "resample_counts",
]

_BOOTSTRAP_BATCH_VALUES = 1 << 22  # values per bootstrap batch: 32 MiB of float64
_CHUNK = 100  # count resamples per batch: (100, n) float64 arrays


@dataclass(frozen=True)
class Interval:
    """A confidence interval and how it was obtained."""

    low: float
    high: float
    confidence: float
    method: str

    def as_dict(self) -> dict[str, float | str]:
        return {
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "method": self.method,
        }


def bootstrap_interval(
    sample: NDArray[np.float64],
    statistic: Callable[..., NDArray[np.float64]],
    *,
    seed: int,
    n_resamples: int = 1000,
    confidence: float = 0.95,
) -> Interval:
    """Percentile bootstrap interval of a vectorised `statistic(x, axis=-1)`.

    Percentile rather than BCa: BCa's jackknife is O(n^2) and the samples here
    reach 10^5 values.
    """
    result = stats.bootstrap(
        (sample,),
        statistic,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        # Bound memory: scipy otherwise materialises all resamples at once
        # (1000 x 10^5 doubles = 0.8 GB for a 10^5-simplex CV).
        batch=max(1, _BOOTSTRAP_BATCH_VALUES // max(1, len(sample))),
        rng=np.random.default_rng(seed),
    )
    ci = result.confidence_interval
    return Interval(
        float(ci.low), float(ci.high), confidence, f"bootstrap-percentile({n_resamples})"
    )


def resample_counts(n: int, n_resamples: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """(n_resamples, n): how often each of n items is drawn in a size-n resample."""
    draws = rng.integers(0, n, size=(n_resamples, n))
    flat = (draws + np.arange(n_resamples)[:, None] * n).ravel()
    return np.bincount(flat, minlength=n_resamples * n).reshape(n_resamples, n).astype(np.float64)


def count_bootstrap(
    fn: Any,
    n: int,
    n_bootstrap: int,
    seed: int,
) -> list[NDArray[np.float64]]:
    """Run fn(weights) -> tuple of (B,) arrays over all resamples in chunks; concatenate.

    The counts come from np.random.default_rng(seed), `_CHUNK` resamples at a time.
    """
    rng = np.random.default_rng(seed)
    parts: list[tuple[NDArray[np.float64], ...]] = []
    done = 0
    while done < n_bootstrap:
        b = min(_CHUNK, n_bootstrap - done)
        parts.append(fn(resample_counts(n, b, rng)))
        done += b
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


def percentile_interval(values: NDArray[np.float64], confidence: float, method: str) -> Interval:
    """The central `confidence` interval of bootstrap draws (NaN draws left out)."""
    alpha = (1.0 - confidence) / 2.0
    low, high = np.nanquantile(values, [alpha, 1.0 - alpha])
    return Interval(float(low), float(high), confidence, method)


def percentile_bounds(
    draws: NDArray[np.float64], confidence: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Central `confidence` bounds of each column of (B, K) bootstrap draws: (K,) low and high.

    Unlike `percentile_interval`, a NaN draw is not left out: its column's bounds are NaN.
    """
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha], axis=0)
    return np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)


def paired_interval(
    a: NDArray[np.float64], b: NDArray[np.float64], confidence: float = 0.95, what: str = ""
) -> Interval:
    """Percentile interval of a - b over bootstrap draws shared by a and b (same seed,
    same resample counts), e.g. a model and its null measured on the same items."""
    if a.shape != b.shape:
        raise ValueError(f"paired draws must have the same shape, got {a.shape} and {b.shape}")
    return percentile_interval(a - b, confidence, f"paired bootstrap-percentile({a.size}){what}")
