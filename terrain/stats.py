"""Statistics shared by measures: the coefficient of variation and the analytic nulls.

Bootstrap intervals live in terrain/bootstrap.py.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray


def coefficient_of_variation(x: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
    """std/mean with the population std (ddof=0), as in the research notes."""
    return np.asarray(np.std(x, axis=axis) / np.mean(x, axis=axis), dtype=np.float64)


def independent_cosine_sd(n: int) -> float:
    """Standard deviation of the cosine of two independent isotropic vectors in R^n."""
    return 1.0 / math.sqrt(n)
