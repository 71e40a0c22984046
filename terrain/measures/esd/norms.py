"""WeightWatcher's norm metrics of a weight matrix, from its eigenvalues λ = σ².

Normalisation, as in WeightWatcher 0.7.7 for dense layers with default options: the ESD
is the squared singular values of W itself, λ_i = σ_i², neither W nor WᵀW divided by N
(`normalize` was removed in 0.6.5; `apply_normalize_Wmats` leaves `w_norm` = 1 for dense
layers, and `combined_eigenvalues` squares `svd_vals(W)`). There are M = min(rows, cols)
of them, and N = max(rows, cols). These are exactly the battery's squared singular values.

Definitions (`WeightWatcher.apply_norm_metrics`, RMT_Util `matrix_rank`, `matrix_entropy`),
all logarithms base 10 except the entropy's:

- norm = Σλ = ‖W‖_F², log_norm = log₁₀ Σλ;
- spectral_norm = λ_max = σ_max², log_spectral_norm = log₁₀ λ_max;
- alpha_weighted = α · log₁₀ λ_max (α of the power-law fit);
- log_alpha_norm = log₁₀ Σ λ^α (summed in logs, so large α cannot overflow);
- stable_rank = Σλ / λ_max;
- matrix_rank = #{σ > σ_max · N · ε₆₄} (NumPy's `matrix_rank` tolerance, on σ = √λ; but see
  the Gram's resolution below);
- entropy = −Σ p ln p / ln(matrix_rank), p = λ/Σλ (natural logs; 0·ln 0 = 0).

Differences: WeightWatcher adds ε = 1e-10 to every p and to the rank before the entropy
(changing it by under 1e-6 for M ≤ 4096; on CUDA it adds 6e-5); here p is used as is, and
a rank of 1 has entropy 0 where WeightWatcher divides by ln(1 + 1e-10). Its rank tolerance
is meant for singular values from an SVD; eigenvalues of a float64 Gram carry rounding
noise of about M·ε·λ_max, far above it, so by default (`from_gram`) the rank also leaves
out eigenvalues below M·ε·λ_max (the battery has set those to 0 already). It then agrees
with WeightWatcher's SVD-based rank unless W has singular values between N·ε·σ_max and
√(M·ε)·σ_max (about 1e-12 … 1e-7 of σ_max), which a Gram cannot resolve.
Where the fit failed (α NaN; WeightWatcher uses α = −1), alpha_weighted and log_alpha_norm
are NaN. Negative eigenvalues (eigensolver rounding) count as 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray
from scipy import special

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

_EPS64 = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class EsdNorms:
    """WeightWatcher's norm metrics of one matrix (its column names in the comments)."""

    lambda_max: float  # spectral_norm, lambda_max
    norm: float  # norm: Σλ = ‖W‖_F²
    log_norm: float  # log_norm
    log_spectral_norm: float  # log_spectral_norm
    alpha_weighted: float  # alpha_weighted
    log_alpha_norm: float  # log_alpha_norm
    stable_rank: float  # stable_rank
    matrix_rank: int  # matrix_rank
    rank_tolerance: float  # on σ: σ_max·N·ε₆₄, or σ_max·√(M·ε₆₄) with `from_gram`
    spectral_entropy: float  # entropy
    status: str

    def as_dict(self) -> dict[str, float | int | str | None]:
        return {
            "lambda_max": json_float(self.lambda_max),
            "norm": json_float(self.norm),
            "log_norm": json_float(self.log_norm),
            "log_spectral_norm": json_float(self.log_spectral_norm),
            "alpha_weighted": json_float(self.alpha_weighted),
            "log_alpha_norm": json_float(self.log_alpha_norm),
            "stable_rank": json_float(self.stable_rank),
            "matrix_rank": self.matrix_rank,
            "rank_tolerance": json_float(self.rank_tolerance),
            "spectral_entropy": json_float(self.spectral_entropy),
            "status": self.status,
        }


@dataclass(frozen=True)
class EsdNormsRows(PerRow[EsdNorms]):
    """The norm metrics of L matrices of one shape, one entry per row."""

    lambda_max: NDArray[np.float64]
    norm: NDArray[np.float64]
    log_norm: NDArray[np.float64]
    log_spectral_norm: NDArray[np.float64]
    alpha_weighted: NDArray[np.float64]
    log_alpha_norm: NDArray[np.float64]
    stable_rank: NDArray[np.float64]
    matrix_rank: NDArray[np.int64]
    rank_tolerance: NDArray[np.float64]
    spectral_entropy: NDArray[np.float64]
    status: tuple[str, ...]

    def row(self, i: int) -> EsdNorms:
        return self.pick(EsdNorms, i)


def esd_norms_rows(
    rows: Eigenvalues, shape: Sequence[int], alpha: npt.ArrayLike, *, from_gram: bool = True
) -> EsdNormsRows:
    """Norm metrics of an (L, M) stack of eigenvalue rows of matrices of `shape`.

    `alpha`: the L power-law exponents (NaN where the fit failed), or one for all rows;
    `from_gram`: the eigenvalues come from a float64 Gram, which resolves them only down
    to M·ε·λ_max (False: from an SVD, WeightWatcher's rank tolerance alone).
    """
    lam, _ = eigenvalue_rows(rows)
    big, small = matrix_dims(shape, lam.shape[1])
    count = lam.shape[0]
    alphas = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (count,))
    problems = [row_problem(r) for r in lam]
    lam, bad = measurable(lam, problems)
    top = lam[:, -1]
    total = lam.sum(axis=1)
    relative = max(big * _EPS64, math.sqrt(small * _EPS64)) if from_gram else big * _EPS64
    tolerance = np.sqrt(top) * relative
    rank = (np.sqrt(lam) > tolerance[:, None]).sum(axis=1).astype(np.int64)
    p = lam / total[:, None]
    h = special.entr(p).sum(axis=1)  # −Σ p ln p, with 0·ln 0 = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = np.where(rank > 1, h / np.log(np.maximum(rank, 2)), 0.0)
        log_lam = np.log(lam)  # −inf for zeros: they add nothing to Σ λ^α
        weighted = np.where(np.isfinite(alphas), alphas, 0.0)[:, None] * log_lam
        log_alpha = special.logsumexp(weighted, axis=1) / math.log(10.0)
    log_alpha = np.where(np.isfinite(alphas), log_alpha, np.nan)
    log_top = np.log10(top)

    def measured(x: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.where(bad, np.nan, x)

    return EsdNormsRows(
        lambda_max=measured(top),
        norm=measured(total),
        log_norm=measured(np.log10(total)),
        log_spectral_norm=measured(log_top),
        alpha_weighted=measured(alphas * log_top),
        log_alpha_norm=measured(log_alpha),
        stable_rank=measured(total / top),
        matrix_rank=np.where(bad, 0, rank),
        rank_tolerance=measured(tolerance),
        spectral_entropy=measured(entropy),
        status=statuses(problems),
    )


def esd_norms(
    eigenvalues: Eigenvalues, shape: Sequence[int], alpha: float, *, from_gram: bool = True
) -> EsdNorms:
    """Norm metrics of one matrix of `shape` from its M eigenvalues λ = σ²."""
    lam = one_spectrum(eigenvalues)
    return esd_norms_rows(lam, shape, alpha, from_gram=from_gram).row(0)
