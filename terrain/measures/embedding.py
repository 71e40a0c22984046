"""Token-embedding geometry: norms, pairwise cosines and the covariance eigenspectrum.

- norms of the rows: mean, std, min, max (zero rows, e.g. a zeroed padding token, counted);
- mean pairwise cosine over a seeded sample of rows (all pairs of the sample), with a 95%
  interval from the U-statistic normal approximation var ≈ 4·var(row means)/n (Hoeffding;
  conservative for independent rows);
- covariance eigenspectrum of the centred table (float64, accumulated in row chunks), its
  participation ratio PR = (Σλ)²/Σλ² and PR/dim, the share of the top eigenvalue and the
  dimensions holding 80/90/95/99% of the variance (the seed's §2 definitions).

Analytic nulls: the cosine of independent isotropic vectors has mean 0 and sd 1/√dim; an
N × D table of i.i.d. entries has E[λ] = σ², E[λ²] = σ⁴(1 + D/N) (Marchenko–Pastur), so
PR ≈ D/(1 + D/N), PR/dim ≈ 1/(1 + D/N). Seed reference (Qwen3.5-0.8B, seed notebook §2):
PR/dim 0.535, mean cosine 0.195; a reference for that model only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import NDArray

from terrain.bootstrap import Interval
from terrain.measures.chunks import Chunks, whole
from terrain.measures.kernels import gram, norms64, sum64

N_SAMPLE = 4000
VARIANCE_SHARES = (0.80, 0.90, 0.95, 0.99)
SEED_REFERENCE = {
    "model": "Qwen3.5-0.8B",
    "pr_over_dim": 0.535,
    "mean_cosine": 0.195,
    "source": "seed notebook section 2 summary (reference for that model only)",
}
_CHUNK = 8192


def random_pr_over_dim(n_rows: int, dim: int) -> float:
    """PR/dim of the covariance of an n_rows × dim i.i.d. table: 1/(1 + dim/n_rows)."""
    return 1.0 / (1.0 + dim / n_rows)


@dataclass(frozen=True)
class EmbeddingGeometry:
    label: str
    n_tokens: int
    dim: int
    norm_mean: float
    norm_std: float
    norm_min: float
    norm_max: float
    zero_rows: int
    mean_cosine: float
    cosine_std: float
    cosine_interval: Interval
    n_sample: int
    seed: int
    participation_ratio: float
    pr_over_dim: float
    null_pr_over_dim: float  # analytic, 1/(1 + dim/n_tokens)
    top_eigenvalue_share: float
    dims_for: dict[str, int]  # "0.9" -> dimensions holding 90% of the variance
    eigenvalues: NDArray[np.float64] = field(repr=False)  # descending, for plots

    @property
    def null_cosine_sd(self) -> float:
        return 1.0 / math.sqrt(self.dim)

    def as_dict(self) -> dict[str, object]:
        total = float(self.eigenvalues.sum()) or 1.0
        return {
            "table": self.label,
            "n_tokens": self.n_tokens,
            "dim": self.dim,
            "norm_mean": self.norm_mean,
            "norm_std": self.norm_std,
            "norm_min": self.norm_min,
            "norm_max": self.norm_max,
            "zero_rows": self.zero_rows,
            "mean_cosine": self.mean_cosine,
            "cosine_std": self.cosine_std,
            "cosine_interval": self.cosine_interval.as_dict(),
            "n_sample": self.n_sample,
            "seed": self.seed,
            "null_cosine_sd": self.null_cosine_sd,
            "participation_ratio": self.participation_ratio,
            "pr_over_dim": self.pr_over_dim,
            "null_pr_over_dim": self.null_pr_over_dim,
            "top_eigenvalue_share": self.top_eigenvalue_share,
            "dims_for": dict(self.dims_for),
            "top_eigenvalue_shares": [float(x) / total for x in self.eigenvalues[:10]],
        }


def covariance_eigenvalues(table: torch.Tensor, chunk: int = _CHUNK) -> NDArray[np.float64]:
    """Eigenvalues (descending) of the rows' covariance of a whole table."""
    return chunked_covariance_eigenvalues(whole(table), tuple(table.shape), chunk)


def chunked_covariance_eigenvalues(
    chunks: Chunks, shape: tuple[int, ...], chunk: int = _CHUNK
) -> NDArray[np.float64]:
    """Eigenvalues (descending) of the rows' covariance, the table read as row chunks.

    The mean is taken first (float64, one pass), then each block of `chunk` centred rows
    adds its float32 Gram to a float64 sum (a second pass): centring before the product
    keeps a large common mean from cancelling, and a block's float32 rounding (about 1e-7
    relative) is far below what the participation ratio and the variance shares resolve.
    """
    n, d = shape
    total_sum: torch.Tensor | None = None
    for part in chunks():
        s = sum64(part, dim=0)
        total_sum = s if total_sum is None else total_sum + s
    if total_sum is None:
        raise ValueError("an empty table has no covariance")
    total = torch.zeros(d, d, dtype=torch.float64)
    centre: torch.Tensor | None = None
    for part in chunks():
        # A half-precision table (bf16, fp16: how releases store it) is centred and
        # multiplied in float32, block by block; float32 and float64 tables as they are.
        compute = torch.float64 if part.dtype == torch.float64 else torch.float32
        if centre is None:
            centre = (total_sum / n).to(compute).to(part.device)
            total = total.to(part.device)
        for start in range(0, part.shape[0], chunk):
            total += gram(part[start : start + chunk].to(compute) - centre)
    ev = torch.linalg.eigvalsh(total / n).flip(0).clamp_min(0.0)
    out: NDArray[np.float64] = ev.cpu().numpy()
    return out


def sampled_cosines(u: torch.Tensor) -> tuple[NDArray[np.float64], float]:
    """Row means of the pairwise cosines of unit rows u (self excluded), and the mean of
    the squared cosines over all pairs, in float64 without forming the n × n matrix:
    Σ_j c_ij = u_i·Σu, and Σ_ij c_ij² = ‖uᵀu‖² (the smaller of the two Grams)."""
    k = u.shape[0]
    row_means = (u @ u.sum(dim=0) - 1.0) / (k - 1)
    squares = (gram(u, outer=u.shape[1] > k).square().sum() - k) / (k * (k - 1))
    return row_means.cpu().numpy(), float(squares)


def embedding_geometry(
    table: torch.Tensor, *, label: str = "", n_sample: int = N_SAMPLE, seed: int = 0
) -> EmbeddingGeometry:
    """Every statistic of one (tokens × dim) table."""
    if table.dim() != 2:
        raise ValueError(f"an embedding table is 2-D, got shape {list(table.shape)}")
    return chunked_embedding_geometry(
        whole(table),
        tuple(table.shape),
        lambda rows: table[torch.from_numpy(rows).to(table.device)],
        label=label,
        n_sample=n_sample,
        seed=seed,
    )


def chunked_embedding_geometry(
    chunks: Chunks,
    shape: tuple[int, ...],
    take_rows: Callable[[NDArray[np.int64]], torch.Tensor],
    *,
    label: str = "",
    n_sample: int = N_SAMPLE,
    seed: int = 0,
) -> EmbeddingGeometry:
    """`embedding_geometry` of a table read as row chunks (two passes) plus the sampled
    rows `take_rows(indices)`: a 7B model's table is never converted whole."""
    if len(shape) != 2:
        raise ValueError(f"an embedding table is 2-D, got shape {list(shape)}")
    n, d = shape
    norms = np.concatenate([norms64(part).cpu().numpy() for part in chunks()])
    nonzero = np.flatnonzero(norms > 0)
    rng = np.random.default_rng(seed)
    k = min(n_sample, nonzero.size)
    rows = np.sort(rng.choice(nonzero, size=k, replace=False))
    x = take_rows(rows).to(torch.float64)
    u = x / torch.linalg.vector_norm(x, dim=1, keepdim=True)
    row_means, mean_square = sampled_cosines(u)
    mean_cos = float(row_means.mean())
    cos_std = math.sqrt(max(mean_square - mean_cos**2, 0.0))
    half = 1.96 * 2.0 * float(row_means.std(ddof=1)) / math.sqrt(k)
    interval = Interval(
        mean_cos - half,
        mean_cos + half,
        0.95,
        "U-statistic normal approximation, var = 4 var(row means)/n",
    )
    ev = chunked_covariance_eigenvalues(chunks, shape)
    total = float(ev.sum())
    pr = total**2 / float(np.sum(ev**2)) if total > 0 else float("nan")
    share = np.cumsum(ev) / total if total > 0 else np.zeros_like(ev)
    dims_for = {f"{s:g}": int(np.searchsorted(share, s) + 1) for s in VARIANCE_SHARES}
    return EmbeddingGeometry(
        label=label,
        n_tokens=n,
        dim=d,
        norm_mean=float(norms.mean()),
        norm_std=float(norms.std()),
        norm_min=float(norms.min()),
        norm_max=float(norms.max()),
        zero_rows=int(n - nonzero.size),
        mean_cosine=mean_cos,
        cosine_std=cos_std,
        cosine_interval=interval,
        n_sample=k,
        seed=seed,
        participation_ratio=pr,
        pr_over_dim=pr / d,
        null_pr_over_dim=random_pr_over_dim(n, d),
        top_eigenvalue_share=float(ev[0] / total) if total > 0 else float("nan"),
        dims_for=dims_for,
        eigenvalues=ev,
    )
