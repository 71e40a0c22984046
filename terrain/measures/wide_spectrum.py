"""σ² of a wide rectangular matrix on the CPU: the spectrum in float32, σ_min in float64.

A 7B model's MLP projections are 4096 × 11008. On one CPU core the float64 route (float64
Gram, float64 `eigvalsh`) takes about 10 s for one, a third of a 7B battery; this route
takes 4.6 s (float32 Gram 2 s instead of 5 s, float32 eigensolver 2.9 s instead of
4.8 s at n = 4096; benchmark figures in docs/real-size.md). Every statistic but one
keeps its use:

- float32 eigenvalues are backward stable: each is within c·ε₃₂·λ_max of its exact value
  (ε₃₂ ≈ 6e-8; c ≈ 30 measured for MKL's solver at n = 4096), so stable rank, the
  eigenvalue participation ratio, the 1 %-of-σ_max active share (λ above 1e-4·λ_max),
  rank90 and the ESD's tail, bulk and spikes move by about 1e-5 relative at most, and
  counts only for a value on a boundary (measured on the 7B MLP shape: 5e-6 on stable
  rank, 0 on rank90 and the active share; tests/unit/test_wide_spectrum.py bounds it on
  smaller matrices);
- the participation ratio of σ itself, (Σσ)²/Σσ², reads the bottom of the spectrum: a
  small σᵢ = √λᵢ carries the eigenvalue's absolute error over 2σᵢ, so its relative error
  grows with the condition number κ, about 0.02·ε₃₂·κ measured (7e-8 on the 7B MLP shape at
  random init, κ = 4.1; 3e-6 to 1.2e-5 at κ = e⁹ ≈ 8e3 on two CPUs; 2e-4 at κ = e¹²),
  well inside its baseline tolerance (0.01 absolute on the ratio to Marchenko–Pastur);
- σ_min is the exception: its float32 error is relative c·ε₃₂·κ².

So σ_min is computed again in float64 unless the float32 value is resolved
(λ_min ≥ `RESOLVED_SHARE`·λ_max, i.e. κ ≤ 10, where its relative error is below about
1e-4; 1e-5 measured on the 7B MLP shape at random init, κ = 4.1): the largest
eigenvalue of the inverse float64 Gram by Lanczos (ARPACK, a seeded start vector),
applied through its Cholesky factor, good to about κ²·ε₆₄ relative as on the float64
route. As there, a σ_min² below n·ε₆₄·λ_max counts as 0 (condition number infinite), as
does a Gram that Cholesky finds not positive definite; every other eigenvalue is raised
to at least the float64 λ_min (what lies below it is rounding).

Square matrices keep the float64 route: their σ_min needs float64 almost always (a
random square matrix has κ of the order of n, 1.4e4 at n = 4096), and a float64 Gram and
its factor cost as much as the float64 eigensolver saves (6.3 s against 6.2 s measured).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch
from numpy.typing import NDArray
from scipy.sparse import linalg as sparse_linalg

from terrain.measures.kernels import blocked_gram

RESOLVED_SHARE = 1e-2  # λ_min/λ_max from which the float32 σ_min is kept (κ ≤ 10)
_EPS64 = float(np.finfo(np.float64).eps)
_LANCZOS_TOL = 1e-10  # relative, on 1/λ_min
_LANCZOS_SEED = 0  # a fixed start vector: the same matrix gives the same digits


def wide_squared_singular_values(w: torch.Tensor) -> torch.Tensor:
    """σ² of one 2-D CPU matrix in any float dtype, descending, float64 (see module doc)."""
    if w.dim() != 2:
        raise ValueError(f"a spectrum needs a 2-D matrix, got shape {list(w.shape)}")
    outer = w.shape[0] < w.shape[1]
    ev = _float32_eigenvalues(blocked_gram(w, outer=outer, dtype=torch.float32))
    top = float(ev[0])
    if top <= 0.0 or float(ev[-1]) >= RESOLVED_SHARE * top:
        return ev
    smallest = smallest_eigenvalue(blocked_gram(w, outer=outer))
    if smallest <= ev.shape[0] * _EPS64 * top:
        smallest = 0.0
    ev.clamp_(min=smallest)
    ev[-1] = smallest
    return ev


def _float32_eigenvalues(gram32: torch.Tensor) -> torch.Tensor:
    """Descending float64 copy of a float32 Gram's eigenvalues, negatives (rounding) at 0."""
    ev: torch.Tensor = torch.linalg.eigvalsh(gram32).flip(-1).to(torch.float64)
    return ev.clamp_(min=0.0)


def smallest_eigenvalue(gram64: torch.Tensor) -> float:
    """λ_min of a float64 Gram (overwritten), or 0 where it is not positive definite."""
    n = gram64.shape[0]
    try:
        factor = scipy.linalg.cho_factor(gram64.numpy(), overwrite_a=True, check_finite=False)
    except np.linalg.LinAlgError:
        return 0.0

    def inverse_gram(v: NDArray[np.float64]) -> NDArray[np.float64]:
        solved: NDArray[np.float64] = scipy.linalg.cho_solve(factor, v, check_finite=False)
        return solved

    operator = sparse_linalg.LinearOperator((n, n), matvec=inverse_gram, dtype=np.float64)
    start = np.random.default_rng(_LANCZOS_SEED).standard_normal(n)
    (largest_inverse,) = sparse_linalg.eigsh(
        operator, k=1, which="LA", v0=start, tol=_LANCZOS_TOL, return_eigenvectors=False
    )
    return 0.0 if largest_inverse <= 0.0 else float(1.0 / largest_inverse)
