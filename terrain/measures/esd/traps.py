"""Correlation traps: large eigenvalues that survive shuffling the entries of W.

Shuffling the entries of W destroys every correlation between them and keeps their
distribution, so the shuffled copy is a random matrix of W's entries: with finite-variance
entries its ESD is Marchenko–Pastur with the entries' variance v, and its largest
eigenvalue sits within a few Tracy–Widom scales of λ+ = v(√N + √M)² (terrain.measures.esd
.bulk). What rises above that is made by the entries themselves, not by their arrangement:
a few huge entries (each contributes about w²), a heavy-tailed entry law, or a non-zero
entry mean μ (a rank-one spike of about N·M·μ², reported as `entry_mean` so that it can
be told apart). Those are WeightWatcher's correlation traps.

Here: the entries are permuted by NumPy's PCG64 generator from `seed` (recorded in the
result; the same seed gives the same shuffle and the same value), the largest eigenvalue
of the shuffled copy's smaller Gram comes from Lanczos (ARPACK's `eigsh` on the operator
v ↦ Wᵀ(Wv), never forming the Gram; its start vector is drawn from the same generator),
and v is the sample variance of the entries (centred, float64). The copy is a trap when
λ_max > λ+ + t·s_TW, t = `tw_scales` (default: the 99.9 % quantile of TW₁).

WeightWatcher 0.7.7 (`analyze(randomize=True)`: `apply_random_esd`, `random_eigenvalues`,
`apply_mp_fit(random=True)`) shuffles each matrix with `np.random.shuffle`, unseeded (a
new shuffle every run), takes the full SVD of the shuffled copy, fits an MP density to its
ESD (see bulk.py) and reports `rand_num_spikes` = `num_traps` above that fit's edge, and
`max_rand_eval`; with fewer than 100 eigenvalues it pools 5 shuffles. The decision rule
here (edge from the entry variance and the TW margin) is not its density fit, so trap
counts can differ near the edge; the shuffle is seeded and the eigensolver is Lanczos.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from numpy.typing import NDArray
from scipy.sparse import linalg as sparse_linalg

from terrain.measures.esd.bulk import DEFAULT_TW_SCALES, mp_edges, tracy_widom_scale
from terrain.measures.esd.common import OK, json_float
from terrain.seeds import derived_seed

Matrix = npt.ArrayLike | torch.Tensor
Floats = NDArray[np.floating[Any]]  # float32 or float64
_DENSE_UP_TO = 64  # Grams this small are diagonalised outright (ARPACK needs k < n)
# Relative: float32 products resolve about 1e-7, and the TW margin t·s_TW is above 1e-3 of
# λ+ for matrices up to 10⁵ on a side.
_LANCZOS_TOL = 1e-6


def _as_matrix(w: Matrix) -> Floats:
    """W as a 2-D float32 or float64 array (other dtypes, e.g. bfloat16, become float32)."""
    if isinstance(w, torch.Tensor):
        t = w.detach().to("cpu")
        if t.dtype not in (torch.float32, torch.float64):
            t = t.to(torch.float32)
        a: Floats = t.numpy()
    else:
        a = np.asarray(w)
        if a.dtype not in (np.float32, np.float64):
            a = a.astype(np.float32)
    if a.ndim != 2:
        raise ValueError(f"a correlation trap needs a 2-D matrix, got shape {a.shape}")
    return a


def _shuffle(a: Floats, rng: np.random.Generator) -> Floats:
    # Shuffling a flat copy in place draws what rng.permutation(a.size) draws (one
    # Fisher–Yates pass over as many items) and gives a[permutation], bit for bit,
    # without the int64 index array and the gather: half the time.
    flat = a.reshape(-1).copy()
    rng.shuffle(flat)
    return flat.reshape(a.shape)


def shuffled(w: Matrix, seed: int) -> Floats:
    """A copy of W with its entries permuted uniformly at random by PCG64(`seed`)."""
    return _shuffle(_as_matrix(w), np.random.Generator(np.random.PCG64(seed)))


def _top_eigenvalue(a: Floats, rng: np.random.Generator) -> float:
    """λ_max of the smaller Gram of `a`, by Lanczos from a start vector drawn from `rng`."""
    rows, cols = a.shape
    small = min(rows, cols)
    tall = rows >= cols
    if small <= _DENSE_UP_TO:
        b = a.astype(np.float64)
        return float(np.linalg.eigvalsh(b.T @ b if tall else b @ b.T)[-1])

    def gram_times(v: Floats) -> Floats:
        return a.T @ (a @ v) if tall else a @ (a.T @ v)

    op = sparse_linalg.LinearOperator((small, small), matvec=gram_times, dtype=a.dtype)
    start = rng.standard_normal(small).astype(a.dtype)
    try:
        top = sparse_linalg.eigsh(
            op, k=1, which="LA", v0=start, tol=_LANCZOS_TOL, return_eigenvectors=False
        )
    except sparse_linalg.ArpackNoConvergence as err:
        top = err.eigenvalues
        if len(top) == 0:
            return float("nan")
    return float(np.max(top))


def top_eigenvalue(w: Matrix, seed: int = 0) -> float:
    """λ_max = σ_max² of W, by Lanczos on its smaller Gram (start vector from `seed`)."""
    return _top_eigenvalue(_as_matrix(w), np.random.Generator(np.random.PCG64(seed)))


@dataclass(frozen=True)
class CorrelationTrap:
    """The largest eigenvalue of a seeded entry-shuffled copy of W against its MP edge."""

    seed: int
    n: int  # larger dimension
    m: int  # smaller dimension
    lambda_max: float  # of the shuffled copy
    lambda_plus: float  # v(√N + √M)², v the entries' variance
    tw_scale: float
    tw_scales: float
    threshold: float  # λ+ + t·s_TW
    ratio: float  # λ_max / λ+
    is_trap: bool  # λ_max > threshold
    entry_mean: float
    entry_variance: float
    status: str

    def as_dict(self) -> dict[str, float | int | bool | str | None]:
        return {
            "seed": self.seed,
            "n": self.n,
            "m": self.m,
            "lambda_max": json_float(self.lambda_max),
            "lambda_plus": json_float(self.lambda_plus),
            "tw_scale": json_float(self.tw_scale),
            "tw_scales": self.tw_scales,
            "threshold": json_float(self.threshold),
            "ratio": json_float(self.ratio),
            "is_trap": self.is_trap,
            "entry_mean": json_float(self.entry_mean),
            "entry_variance": json_float(self.entry_variance),
            "status": self.status,
        }


def correlation_trap(
    w: Matrix, *, seed: int, tw_scales: float = DEFAULT_TW_SCALES
) -> CorrelationTrap:
    """Shuffle W's entries with `seed` and compare the copy's λ_max with its MP edge.

    Degenerate matrices (non-finite or constant entries) give NaN and a reason in `status`.
    """
    if seed < 0:
        raise ValueError(f"seed must be ≥ 0, got {seed}")
    a = _as_matrix(w)
    shape = a.shape
    nan = float("nan")
    mean, var, problem = nan, nan, None
    if a.size == 0:
        problem = "empty matrix"
    elif not np.isfinite(a).all():
        problem = "non-finite entries"
    else:
        mean = float(np.mean(a, dtype=np.float64))
        var = float(np.var(a, dtype=np.float64))
        if var <= 0.0:
            problem = "constant entries: no MP bulk"
    top = lam_plus = scale = nan
    if problem is None:
        rng = np.random.Generator(np.random.PCG64(seed))
        top = _top_eigenvalue(_shuffle(a, rng), rng)
        if not np.isfinite(top):
            problem = "Lanczos did not converge"
        lam_plus = mp_edges(shape, var)[1]
        scale = tracy_widom_scale(shape, var)
    threshold = lam_plus + tw_scales * scale
    return CorrelationTrap(
        seed=seed,
        n=max(shape),
        m=min(shape),
        lambda_max=top,
        lambda_plus=lam_plus,
        tw_scale=scale,
        tw_scales=float(tw_scales),
        threshold=threshold,
        ratio=top / lam_plus if problem is None else nan,
        is_trap=bool(problem is None and top > threshold),
        entry_mean=mean,
        entry_variance=var,
        status=OK if problem is None else problem,
    )


def trap_seed(tensor: str) -> int:
    """The shuffle seed of a stored tensor: derived from its name alone, so a checkpoint's
    tensor is shuffled the same way on every run, and a null's like-named tensor too."""
    return derived_seed("correlation trap", tensor)


@dataclass(frozen=True)
class RoleTraps:
    """The correlation traps of one role's measured layers (all, or a stated sample)."""

    stack: str
    role: str
    layers: tuple[int, ...]
    traps: tuple[CorrelationTrap, ...]

    @property
    def label(self) -> str:
        return f"{self.stack}.{self.role}"

    def count(self) -> int:
        return sum(t.is_trap for t in self.traps)

    def as_dict(self) -> dict[str, object]:
        return {
            "layers": list(self.layers),
            "traps": [t.as_dict() for t in self.traps],
        }
