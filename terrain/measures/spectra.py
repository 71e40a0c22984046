"""Singular-value spectra of weight matrices, and their Marchenko–Pastur null.

Every statistic comes from the squared singular values σ², computed as the eigenvalues
of the smaller Gram matrix (WᵀW or WWᵀ, size n = min(out, in)) in float64 (on the CPU,
rectangular matrices wider than FLOAT64_EIGEN_MAX_N: float32 with σ_min refined in
float64, see terrain/measures/wide_spectrum.py). The Gram is
formed in float64 from float32 weights, so its rounding error is about n·ε₆₄·σ_max²:
σ_min is resolved down to about 1e-7·σ_max (condition numbers up to about 1e7), better
than a float32 SVD (error about ε₃₂·σ_max). Eigenvalues below that resolution count as 0.

Definitions (per matrix, σ sorted descending, n values):

- stable rank: Σσ² / σ_max² (the seed's, and WeightWatcher's `stable_rank`);
- participation ratio: (Σσ)² / Σσ², the seed's definition (a participation ratio of the
  singular values themselves); its companion `eigen_participation_ratio` is
  (Σσ²)² / Σσ⁴, the participation ratio of the eigenvalues of WᵀW (the definition used
  for embedding covariances);
- active fraction: share of σ above 1% of σ_max (the seed's);
- rank90: the smallest k whose top-k singular values hold 90% of the nuclear norm Σσ
  (the seed's `searchsorted(cumsum(σ)/Σσ, 0.9) + 1`);
- condition number: σ_max / σ_min (infinite when σ_min is below the resolution).

Null: an m×n matrix of i.i.d. entries (any init of that kind: normal, truncated normal)
has σ²/(max(m, n)·var) distributed by Marchenko–Pastur with ratio y = n/m ≤ 1, on
[(1−√y)², (1+√y)²]. `marchenko_pastur` gives each statistic's large-size limit: stable
rank n/(1+√y)², eigen participation ratio n/(1+y), condition number (1+√y)/(1−√y) (none
for square matrices, where σ_min → 0 and κ grows with n).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from terrain.measures.esd.shape import EsdShapeRows, esd_shape_rows
from terrain.measures.kernels import blocked_gram, gram
from terrain.measures.wide_spectrum import wide_squared_singular_values

# Projection roles initialised i.i.d. in every family here: the Marchenko–Pastur null applies.
PROJECTION_ROLES = (
    "q", "k", "v", "o", "xq", "xk", "xv", "xo", "mlp_gate", "mlp_up", "mlp_down",
)  # fmt: skip
# Wider rectangular matrices (both sides) take the float32 route on the CPU: 7B MLP
# projections (4096 × 11008) do; every default model, the BERT-large and 0.8B shapes
# (1024 wide) and all square matrices keep float64.
FLOAT64_EIGEN_MAX_N = 2048
ACTIVE_LEVEL = 0.01  # σ > 1% of σ_max counts as active (seed)
NUCLEAR_SHARE = 0.90  # rank90: share of the nuclear norm
_EPS64 = float(np.finfo(np.float64).eps)


def smaller_gram(w: torch.Tensor) -> torch.Tensor:
    """WᵀW or WWᵀ, whichever is smaller, in float64 (n × n, n = min(out, in))."""
    if w.dim() != 2:
        raise ValueError(f"a spectrum needs a 2-D matrix, got shape {list(w.shape)}")
    return gram(w, outer=w.shape[0] < w.shape[1], dtype=torch.float64)


def gram_bytes(shape: Sequence[int]) -> int:
    """Working bytes of one matrix's spectrum: the float64 Gram, one block's product added
    into it (or the eigensolver's copy), and one block of the matrix in float32 and float64
    (kernels.blocked_gram's 64 MiB blocks)."""
    n = min(shape)
    return 2 * 8 * n * n + (96 << 20)


def spectrum(w: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """σ² of one matrix (descending, float64, 1-D), from its smaller Gram formed block by
    block on `device`; `w` may be the stored bf16/fp16 tensor itself. On the CPU a
    rectangular matrix wider than FLOAT64_EIGEN_MAX_N on both sides takes
    terrain.measures.wide_spectrum's route (float32 spectrum, float64 σ_min)."""
    if w.dim() != 2:
        raise ValueError(f"a spectrum needs a 2-D matrix, got shape {list(w.shape)}")
    rows, cols = w.shape
    if (
        min(rows, cols) > FLOAT64_EIGEN_MAX_N
        and rows != cols
        and torch.device(device).type == "cpu"
    ):
        return wide_squared_singular_values(w)
    gram64 = blocked_gram(w.to(device), outer=w.shape[0] < w.shape[1])
    return squared_singular_values(gram64)


def squared_singular_values(grams: torch.Tensor) -> torch.Tensor:
    """σ² of each Gram in a (..., n, n) stack, descending, with values below resolution 0."""
    ev = torch.linalg.eigvalsh(grams).flip(-1)
    n = grams.shape[-1]
    floor = n * _EPS64 * ev[..., :1].clamp_min(0.0)
    return torch.where(ev > floor, ev, torch.zeros_like(ev))


@dataclass(frozen=True)
class Spectra:
    """Per-matrix statistics of a stack of matrices (one entry per matrix)."""

    n: int  # singular values per matrix: min(out, in)
    stable_rank: NDArray[np.float64]
    participation_ratio: NDArray[np.float64]  # seed: (Σσ)²/Σσ²
    eigen_participation_ratio: NDArray[np.float64]  # (Σσ²)²/Σσ⁴
    active_fraction: NDArray[np.float64]
    rank90: NDArray[np.int64]
    condition: NDArray[np.float64]  # inf when σ_min is 0 at float64 resolution
    sv_max: NDArray[np.float64]
    sv_min: NDArray[np.float64]
    normalized: NDArray[np.float32]  # σ/σ_max per matrix, for plots


def spectra_from_squared(s2: torch.Tensor) -> Spectra:
    """Statistics of (L, n) squared singular values (descending), all matrices at once."""
    if s2.dim() == 1:
        s2 = s2.unsqueeze(0)
    s2 = s2.to(torch.float64)
    sv = s2.sqrt()
    top2 = s2[:, 0]
    total2 = s2.sum(dim=1)
    total1 = sv.sum(dim=1)
    nan = torch.full_like(top2, math.nan)
    ok = top2 > 0
    stable = torch.where(ok, total2 / torch.where(ok, top2, 1.0), nan)
    pr = torch.where(ok, total1.square() / torch.where(ok, total2, 1.0), nan)
    sum4 = s2.square().sum(dim=1)
    epr = torch.where(ok, total2.square() / torch.where(ok, sum4, 1.0), nan)
    active = (sv > ACTIVE_LEVEL * sv[:, :1]).to(torch.float64).mean(dim=1)
    share = sv.cumsum(dim=1) / torch.where(ok, total1, 1.0).unsqueeze(1)
    target = torch.full((s2.shape[0], 1), NUCLEAR_SHARE, dtype=torch.float64, device=s2.device)
    rank90 = torch.searchsorted(share.contiguous(), target).squeeze(1) + 1
    smin = sv[:, -1]
    cond = torch.where(smin > 0, sv[:, 0] / torch.where(smin > 0, smin, 1.0), math.inf)
    normalized = sv / torch.where(ok, sv[:, 0], 1.0).unsqueeze(1)
    return Spectra(
        n=int(s2.shape[1]),
        stable_rank=stable.cpu().numpy(),
        participation_ratio=pr.cpu().numpy(),
        eigen_participation_ratio=epr.cpu().numpy(),
        active_fraction=active.cpu().numpy(),
        rank90=rank90.cpu().numpy().astype(np.int64),
        condition=torch.where(ok, cond, nan).cpu().numpy(),
        sv_max=sv[:, 0].cpu().numpy(),
        sv_min=smin.cpu().numpy(),
        normalized=normalized.to(torch.float32).cpu().numpy(),
    )


def effective_rank(s2: torch.Tensor) -> NDArray[np.float64]:
    """Effective rank of each matrix of (L, n) squared singular values (or one row): Roy and
    Vetterli's (2007) exp(H(p)), H the Shannon entropy (natural log) of the normalised
    singular values p_k = σ_k / Σσ (not of σ², as some authors use). r equal nonzero σ give
    exactly r; any spectrum lies between 1 and its rank; a zero matrix has 0 (no direction)."""
    rows = (s2.unsqueeze(0) if s2.dim() == 1 else s2).to(torch.float64).clamp_min(0.0)
    sv = rows.sqrt()
    total = sv.sum(dim=1, keepdim=True)
    p = sv / torch.where(total > 0, total, 1.0)
    terms = torch.where(p > 0, p * torch.log(torch.where(p > 0, p, 1.0)), 0.0)
    erank = torch.exp(-terms.sum(dim=1))
    return torch.where(total.squeeze(1) > 0, erank, 0.0).cpu().numpy()


def marchenko_pastur_effective_rank(rows: int, cols: int) -> float:
    """The large-size effective rank (`effective_rank`) of an m×n matrix of i.i.d. entries.

    With Σσ = n·E[σ], H = ln(n·E[σ]) − E[σ ln σ]/E[σ], so erank = n·E[σ]·exp(−E[σ ln σ]/E[σ])
    (scale-free), the expectations over the Marchenko–Pastur law of λ = σ² (θ grid as in
    `marchenko_pastur`)."""
    n, m = min(rows, cols), max(rows, cols)
    lam, dens = _mp_grid(n / m)
    dens = dens / _cumulative(dens)[-1]
    sv = np.sqrt(lam)
    with np.errstate(divide="ignore", invalid="ignore"):
        sv_log_sv = np.where(sv > 0, sv * np.log(np.where(sv > 0, sv, 1.0)), 0.0)
    mean = float(_cumulative(sv * dens)[-1])
    mean_log = float(_cumulative(sv_log_sv * dens)[-1])
    return n * mean * math.exp(-mean_log / mean)


def matrix_spectra(tensors: Sequence[torch.Tensor]) -> Spectra:
    """Spectra of same-shape matrices: one batched eigvalsh over their float64 Grams."""
    if not tensors:
        raise ValueError("no matrices to measure")
    grams = torch.stack([smaller_gram(t) for t in tensors])
    return spectra_from_squared(squared_singular_values(grams))


@dataclass(frozen=True)
class MarchenkoPastur:
    """Large-size limits of the statistics for an m×n matrix of i.i.d. entries."""

    rows: int
    cols: int
    ratio: float  # y = min/max
    stable_rank: float
    participation_ratio: float  # seed definition (Σσ)²/Σσ²
    eigen_participation_ratio: float
    active_fraction: float
    rank90: float
    condition: float | None  # None for square matrices (σ_min → 0)

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "rows": self.rows,
            "cols": self.cols,
            "ratio": self.ratio,
            "stable_rank": self.stable_rank,
            "participation_ratio": self.participation_ratio,
            "eigen_participation_ratio": self.eigen_participation_ratio,
            "active_fraction": self.active_fraction,
            "rank90": self.rank90,
            "condition": self.condition,
        }


_GRID = 20001
_STEP = math.pi / (_GRID - 1)


def _mp_grid(y: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """λ(θ) = 1 + y + 2√y·cos θ on an even grid of θ ∈ [0, π] (descending from the top edge
    to the bottom one) and the Marchenko–Pastur density in θ there (not normalised)."""
    theta = np.linspace(0.0, math.pi, _GRID)
    lam = np.maximum(1.0 + y + 2.0 * math.sqrt(y) * np.cos(theta), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        dens = np.where(lam > 0, 2.0 * np.sin(theta) ** 2 / (math.pi * lam), 0.0)
    if y == 1.0:  # the limit at λ → 0 is finite: (1 − cos θ)/π
        dens = (1.0 - np.cos(theta)) / math.pi
    return lam, dens


def _cumulative(f: NDArray[np.float64]) -> NDArray[np.float64]:
    """Trapezoid integral of f over the θ grid, from θ = 0 to each grid point."""
    mid = 0.5 * (f[1:] + f[:-1]) * _STEP
    return np.concatenate([[0.0], np.cumsum(mid)])


def marchenko_pastur(rows: int, cols: int) -> MarchenkoPastur:
    """Marchenko–Pastur predictions, integrated numerically in θ.

    With y = n/m ≤ 1, a = (1−√y)², b = (1+√y)², substitute λ = 1 + y + 2√y·cos θ,
    θ ∈ [0, π]: the density becomes 2·sin²θ / (π·λ(θ)) dθ, smooth on the whole interval
    (also at y = 1, where it is (1 − cos θ)/π), so a trapezoid rule is accurate to ~1e-8.
    """
    n, m = min(rows, cols), max(rows, cols)
    y = n / m
    lam, dens = _mp_grid(y)
    mass = _cumulative(dens)
    dens = dens / mass[-1]  # normalise away the quadrature error
    mass = mass / mass[-1]
    root = _cumulative(np.sqrt(lam) * dens)  # ∫ √λ from the top edge down
    mean_root = float(root[-1])
    b = (1.0 + math.sqrt(y)) ** 2
    a = (1.0 - math.sqrt(y)) ** 2
    # Active: λ > ACTIVE_LEVEL²·b; λ(θ) decreases, so `mass` at θ is P(λ ≥ λ(θ)).
    active = float(np.interp(ACTIVE_LEVEL**2 * b, lam[::-1], mass[::-1]))
    # rank90: the share of values (from the top) holding 90% of Σσ.
    rank90 = float(np.interp(NUCLEAR_SHARE * mean_root, root, mass))
    return MarchenkoPastur(
        rows=rows,
        cols=cols,
        ratio=y,
        stable_rank=n / b,
        participation_ratio=n * mean_root**2,
        eigen_participation_ratio=n / (1.0 + y),
        active_fraction=active,
        rank90=n * rank90,
        condition=None if y >= 1.0 else math.sqrt(b / a),
    )


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class RoleSpectra:
    """The spectra of one role's matrices across the layers of a stack, beside their MP null."""

    stack: str
    role: str
    layers: tuple[int, ...]
    shape: tuple[int, int]  # (out, in)
    spectra: Spectra
    mp: MarchenkoPastur
    # The spectrum's shape (power-law tail, MP bulk and spikes) from the same eigenvalues.
    esd: EsdShapeRows | None = None

    @property
    def label(self) -> str:
        return f"{self.stack}.{self.role}"

    def stable_rank_ratio(self) -> NDArray[np.float64]:
        """Measured stable rank over the Marchenko–Pastur prediction, per layer."""
        return self.spectra.stable_rank / self.mp.stable_rank

    def participation_ratio_ratio(self) -> NDArray[np.float64]:
        return self.spectra.participation_ratio / self.mp.participation_ratio

    def as_dict(self) -> dict[str, object]:
        s = self.spectra
        return {
            "stack": self.stack,
            "role": self.role,
            "shape": list(self.shape),
            "marchenko_pastur": self.mp.as_dict(),
            "layers": [
                {
                    "layer": layer,
                    "stable_rank": float(s.stable_rank[i]),
                    "participation_ratio": float(s.participation_ratio[i]),
                    "eigen_participation_ratio": float(s.eigen_participation_ratio[i]),
                    "active_fraction": float(s.active_fraction[i]),
                    "rank90": int(s.rank90[i]),
                    "condition": _finite(float(s.condition[i])),
                    "sv_max": float(s.sv_max[i]),
                    "sv_min": float(s.sv_min[i]),
                }
                for i, layer in enumerate(self.layers)
            ],
        }


def role_spectra(
    stack: str, role: str, layers: Sequence[int], squared: torch.Tensor, shape: tuple[int, int]
) -> RoleSpectra:
    """Wrap (L, n) squared singular values of one role's matrices with their MP null."""
    return RoleSpectra(
        stack=stack,
        role=role,
        layers=tuple(layers),
        shape=shape,
        spectra=spectra_from_squared(squared),
        mp=marchenko_pastur(*shape),
        esd=esd_shape_rows(squared, shape),
    )


def stable_rank_tolerance(n: int) -> float:
    """Finite-size band of stable rank / MP for i.i.d. n-column matrices: σ_max² sits within
    O(n^(-2/3)) of the edge (Tracy–Widom), so 0.05 + 3·n^(-2/3) (0.10 at n = 384)."""
    return 0.05 + 3.0 * math.pow(n, -2.0 / 3.0)


def participation_tolerance(n: int) -> float:
    """Finite-size band of the participation ratio / MP: a bulk average, error O(1/√n) at
    most; 0.03 + 0.5/√n (0.056 at n = 384)."""
    return 0.03 + 0.5 / math.sqrt(n)
