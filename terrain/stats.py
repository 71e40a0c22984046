"""Statistics shared by measures: confidence intervals and the analytic nulls."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats

_BOOTSTRAP_BATCH_VALUES = 1 << 22  # values per bootstrap batch: 32 MiB of float64


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


def coefficient_of_variation(x: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
    """std/mean with the population std (ddof=0), as in the research notes."""
    return np.asarray(np.std(x, axis=axis) / np.mean(x, axis=axis), dtype=np.float64)


def independent_cosine_sd(n: int) -> float:
    """Standard deviation of the cosine of two independent isotropic vectors in R^n."""
    return 1.0 / math.sqrt(n)
