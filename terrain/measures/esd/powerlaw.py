"""Power-law tail of an eigenvalue spectrum: continuous MLE with xmin by the smallest KS distance.

Model (Clauset, Shalizi and Newman 2009, "Power-law distributions in empirical data", §3):
above xmin the eigenvalues λ follow p(λ) ∝ λ^(−α). For a candidate xmin = x_i (the data
x sorted ascending) with the n_i = n − i values x_i … x_(n−1) as its tail,

    α_i  = 1 + n_i / Σ_(j≥i) ln(x_j / x_i)                     (MLE, their eq. 3.1)
    F_i(x) = 1 − (x / x_i)^(1 − α_i)                            (fitted tail CDF)
    D_i  = max_(j≥i) | F_i(x_j) − (j − i)/n_i |                 (KS distance, see `ks`)
    SE   = (α − 1) / √n_tail                                    (their eq. 3.2)

and xmin is the candidate with the smallest D_i (the first one on ties). All candidates are
evaluated at once: the sums Σ_(j≥i) ln x_j are one reversed cumulative sum, and the KS
distances are computed for blocks of candidates as (block × n) arrays, so the cost is
about n²/2 exponentials per matrix (30–40 ms at n = 4096 on one core) and memory stays
bounded.

What WeightWatcher 0.7.7 does (`WeightWatcher.fit_powerlaw`, default `pl_package='ww'`,
which fits with `WW_powerlaw.WWFit`), and the equivalent rule here:

- data: the eigenvalues of the ESD strictly above `EVALS_THRESH` = 1e-5, an absolute floor
  on λ = σ² of the unnormalised W (`normalize` is off since 0.6.5). Here: `floor`, the
  same 1e-5 by default, also absolute; eigenvalues a float64 Gram cannot resolve are 0
  already (terrain.measures.spectra) and fall below any positive floor.
- candidates: every datum except the largest (`WWFit.xmins = data[:-1]`), so tails of
  2 … n values, with no cap on xmin. Here: tails of at least `min_tail` values (default 2,
  the same) and, optionally, xmin ≤ `xmin_max` (default none, the same).
  (WeightWatcher's `fix_fingers='xmin_peak'` restricts xmin to [0.95, 1.5] × the peak of
  the log-histogram instead; that is an option, not its default, and is not reproduced.)
- KS distance: WWFit compares the model CDF with the empirical CDF just below each datum,
  (j − i)/n_i, only: `ks="weightwatcher"` (the default, so that α and xmin are its). The
  exact supremum of |S − F| over x, Clauset et al.'s D (the empirical CDF S jumps from
  (j − i)/n_i to (j − i + 1)/n_i at x_j), is `ks="two_sided"`; it is at most 1/n_i larger
  and can pick a different xmin where the D curve is flat.
- small spectra: with fewer than 20 data (`WW_powerlaw.SMALL_N_CUTOFF`) WWFit switches to
  another estimator (bias-corrected α = 1 + (n − 1)/Σ ln, tails of at least 8, xmin by
  D − 0.868/√n). Here such spectra get NaN and a reason (`min_evals`, default 20).
- failure: WeightWatcher reports α = −1; here α and the others are NaN and `status` says
  why; nothing raises for degenerate data (no eigenvalues above the floor, non-finite
  values, a tail of equal values).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from terrain.measures.esd.common import (
    OK,
    Eigenvalues,
    PerRow,
    eigenvalue_rows,
    json_float,
    one_spectrum,
    row_problem,
)

KSDistance = Literal["weightwatcher", "two_sided"]

WW_EVALS_THRESH = 1e-5  # weightwatcher.constants.EVALS_THRESH (CPU; on CUDA it is 1e-4)
WW_SMALL_N = 20  # WW_powerlaw.SMALL_N_CUTOFF: below it WWFit uses another estimator
MIN_TAIL = 2  # WWFit's candidates data[:-1] leave tails of 2 values at least
_BLOCK_ELEMENTS = 1 << 18  # entries of one (candidates × data) block: 2 MB per array


@dataclass(frozen=True)
class PowerLawFit:
    """The power-law tail of one spectrum (NaN fields and a reason when it cannot be fit)."""

    alpha: float
    xmin: float
    ks_distance: float  # D at the chosen xmin
    n_tail: int  # eigenvalues ≥ xmin (WeightWatcher's num_pl_spikes); 0 when not fit
    alpha_se: float  # (α − 1)/√n_tail (WeightWatcher's sigma)
    n_fitted: int  # eigenvalues above the floor, the data of the fit
    status: str  # "ok" or why there is no fit

    @property
    def ok(self) -> bool:
        return self.status == OK

    def as_dict(self) -> dict[str, float | int | str | None]:
        """Plain values for JSON; NaN becomes None."""
        return {
            "alpha": json_float(self.alpha),
            "xmin": json_float(self.xmin),
            "ks_distance": json_float(self.ks_distance),
            "n_tail": self.n_tail,
            "alpha_se": json_float(self.alpha_se),
            "n_fitted": self.n_fitted,
            "status": self.status,
        }


@dataclass(frozen=True)
class PowerLawRows(PerRow[PowerLawFit]):
    """Power-law fits of L spectra (one role's layers), one entry per row."""

    alpha: NDArray[np.float64]
    xmin: NDArray[np.float64]
    ks_distance: NDArray[np.float64]
    n_tail: NDArray[np.int64]
    alpha_se: NDArray[np.float64]
    n_fitted: NDArray[np.int64]
    status: tuple[str, ...]

    def row(self, i: int) -> PowerLawFit:
        return self.pick(PowerLawFit, i)


def _tail_fit(
    x: NDArray[np.float64], min_tail: int, xmin_max: float | None, ks: KSDistance
) -> tuple[float, float, float, int] | str:
    """(α, xmin, D, n_tail) of positive data x sorted ascending, or why there is none."""
    n = x.size
    count = n - min_tail + 1  # candidates x_0 … x_(count−1): tails of n … min_tail values
    if xmin_max is not None:
        count = min(count, int(np.searchsorted(x, xmin_max, side="right")))
    if count < 1:
        return f"no candidate xmin ≤ {xmin_max:g} with a tail of {min_tail} or more"
    # Logs relative to the largest: short tails (near the top) then sum small numbers, so
    # Σ ln(x_j/x_i) = suffix_i − n_i·ln x_i keeps its digits where it is itself small.
    logs = np.log(x)
    logs -= logs[-1]
    suffix = np.cumsum(logs[::-1])[::-1]  # Σ_(j≥i) ln x_j
    n_tail = (n - np.arange(count)).astype(np.float64)
    spread = suffix[:count] - n_tail * logs[:count]  # Σ_(j≥i) ln(x_j/x_i) ≥ 0
    usable = spread > 0.0  # a tail of equal values has no finite exponent
    alpha = np.where(usable, 1.0 + n_tail / np.where(usable, spread, 1.0), np.inf)
    decay = np.where(usable, alpha - 1.0, 0.0)
    ks_d = np.full(count, np.inf)
    block = max(1, _BLOCK_ELEMENTS // n)
    for start in range(0, count, block):
        stop = min(count, start + block)
        # Candidates start…stop−1 against data start…n−1. Data before a candidate (j < i)
        # get log ratio 0 and step 0, hence model 0 and empirical 0: a gap of 0 (one-sided)
        # or 1/n_i (two-sided), which its own j = i already reaches. No masks needed.
        inv_tail = 1.0 / n_tail[start:stop, None]
        model = logs[None, start:] - logs[start:stop, None]  # ln(x_j/x_i)
        np.maximum(model, 0.0, out=model)
        model *= -decay[start:stop, None]
        np.expm1(model, out=model)
        np.negative(model, out=model)  # F_i(x_j) = 1 − (x_j/x_i)^(1−α_i)
        below = np.arange(start, n, dtype=np.float64) - np.arange(start, stop)[:, None]
        np.maximum(below, 0.0, out=below)
        below *= inv_tail  # empirical CDF just below x_j: (j − i)/n_i
        if ks == "weightwatcher":
            model -= below
            np.abs(model, out=model)
            ks_d[start:stop] = model.max(axis=1)
        else:  # the supremum: the empirical CDF reaches (j − i + 1)/n_i at x_j
            over = model - below
            below += inv_tail
            below -= model
            np.maximum(over, below, out=over)
            ks_d[start:stop] = over.max(axis=1)
    ks_d[~usable] = np.inf
    if not np.isfinite(ks_d).any():
        return "no candidate tail has a finite exponent (equal eigenvalues)"
    best = int(np.argmin(ks_d))
    return float(alpha[best]), float(x[best]), float(ks_d[best]), int(n_tail[best])


def fit_power_law_rows(
    rows: Eigenvalues,
    *,
    floor: float = WW_EVALS_THRESH,
    min_evals: int = WW_SMALL_N,
    min_tail: int = MIN_TAIL,
    xmin_max: float | None = None,
    ks: KSDistance = "weightwatcher",
) -> PowerLawRows:
    """Power-law fits of an (L, n) stack of eigenvalue rows (or one row), any order.

    `floor`: only eigenvalues strictly above it are data (absolute, as WeightWatcher's);
    `min_evals`: fewer data than this give NaN; `min_tail`: the smallest tail a candidate
    xmin may leave; `xmin_max`: optional cap on xmin; `ks`: which KS distance picks xmin
    (module docstring).
    """
    if floor < 0.0 or not np.isfinite(floor):
        raise ValueError(f"floor must be a finite value ≥ 0, got {floor}")
    if min_tail < 2:
        raise ValueError(f"min_tail must be at least 2 (one value has no exponent), got {min_tail}")
    if min_evals < min_tail:
        raise ValueError(f"min_evals ({min_evals}) must be at least min_tail ({min_tail})")
    if ks not in ("weightwatcher", "two_sided"):
        raise ValueError(f"ks must be 'weightwatcher' or 'two_sided', got {ks!r}")
    sorted_rows, _ = eigenvalue_rows(rows)
    count = sorted_rows.shape[0]
    alpha, xmin, ks_d, se = (np.full(count, np.nan) for _ in range(4))
    n_tail = np.zeros(count, dtype=np.int64)
    n_fitted = np.zeros(count, dtype=np.int64)
    status: list[str] = []
    for r, row in enumerate(sorted_rows):
        problem = row_problem(row)
        if problem is not None:
            status.append(problem)
            continue
        data = row[row > floor]
        n_fitted[r] = data.size
        if data.size < min_evals:
            status.append(f"{data.size} eigenvalues above the floor {floor:g}, need {min_evals}")
            continue
        fit = _tail_fit(data, min_tail, xmin_max, ks)
        if isinstance(fit, str):
            status.append(fit)
            continue
        alpha[r], xmin[r], ks_d[r], n_tail[r] = fit
        se[r] = (alpha[r] - 1.0) / np.sqrt(n_tail[r])
        status.append(OK)
    return PowerLawRows(alpha, xmin, ks_d, n_tail, se, n_fitted, tuple(status))


def fit_power_law(
    eigenvalues: Eigenvalues,
    *,
    floor: float = WW_EVALS_THRESH,
    min_evals: int = WW_SMALL_N,
    min_tail: int = MIN_TAIL,
    xmin_max: float | None = None,
    ks: KSDistance = "weightwatcher",
) -> PowerLawFit:
    """The power-law fit of one spectrum (one row of `fit_power_law_rows`)."""
    values = one_spectrum(eigenvalues)
    rows = fit_power_law_rows(
        values, floor=floor, min_evals=min_evals, min_tail=min_tail, xmin_max=xmin_max, ks=ks
    )
    return rows.row(0)
