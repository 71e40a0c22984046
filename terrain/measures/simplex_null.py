"""The Gaussian null of the pentachoron CV (terrain/measures/simplex.py).

A Gaussian cloud of the same dimension gives the null: its CV shrinks with D, so an
embedding whose CV stays well above the null at its D has volume structure (clusters,
anisotropy, near-duplicate rows) that isotropic noise does not. `gaussian_null_cv` samples
it (isotropic, or covariance-matched to an embedding's spectrum) with the same volume
arithmetic and bootstrap as `simplex_cv`; `gaussian_null_cv_exact` is its large-N limit in
closed form.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.typing import NDArray

from terrain.measures.simplex import (
    DEGENERATE_RTOL,
    SimplexCV,
    _check_n_simplices,
    _chunk_size,
    _eliminate,
    _summarise,
)

__all__ = ["gaussian_null_cv", "gaussian_null_cv_exact"]


def gaussian_null_cv(
    dim: int,
    std: float,
    *,
    n_simplices: int = 1000,
    seed: int = 0,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    chunk_size: int | None = None,
    device: torch.device | str = "cpu",
    eigenvalues: NDArray[np.float64] | None = None,
) -> SimplexCV:
    """The null: pentachoron CV of i.i.d. N(0, std^2 I_dim) points.

    With `eigenvalues` (of an embedding's covariance), the points are N(0, Σ) with that
    spectrum instead: the covariance-matched null. Volumes are unchanged by a rotation of
    the points, so Σ's eigenvalues are all it needs (axis-aligned sds √λ), and a mean is
    irrelevant (volumes see differences only). Isotropic vs covariance-matched measures
    what anisotropy alone does to the CV; covariance-matched vs the embedding, what
    structure beyond the covariance (clusters, heavy tails) does.

    Each simplex gets 5 fresh Gaussian points (disjoint 5-tuples of a pool of
    5N), as in the research loop, so the volumes are i.i.d. and the CV depends
    only on `dim` (it is scale-free; `std` is kept so the null mirrors the
    embedding it is compared with). The pool is drawn chunk by chunk from
    np.random.default_rng(seed) in float64, so memory stays bounded and the
    values do not depend on `chunk_size`.
    """
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if not (math.isfinite(std) and std > 0):
        raise ValueError(f"std must be a positive finite number, got {std}")
    _check_n_simplices(n_simplices)
    scales = None
    if eigenvalues is not None:
        if len(eigenvalues) != dim or not np.all(np.isfinite(eigenvalues)):
            raise ValueError(f"eigenvalues must be {dim} finite numbers")
        scales = np.sqrt(np.clip(np.asarray(eigenvalues, dtype=np.float64), 0.0, None))
    rng = np.random.default_rng(seed)
    dev = torch.device(device)
    k = 4
    chunk = min(_chunk_size(chunk_size, k, dim, torch.float64, dev), n_simplices)
    gram = torch.empty((n_simplices, k, k), dtype=torch.float64, device=dev)
    for start in range(0, n_simplices, chunk):
        m = min(chunk, n_simplices - start)
        draw = rng.normal(0.0, std, size=(m, k + 1, dim))
        if scales is not None:  # unit normals times the spectrum's sds
            draw = draw / std * scales
        pts = torch.from_numpy(draw).to(dev)
        e = pts[:, 1:] - pts[:, :1]
        torch.bmm(e, e.transpose(1, 2), out=gram[start : start + m])
    root_det, hadamard, positive = _eliminate(gram)
    ok = positive & (hadamard > DEGENERATE_RTOL)
    volumes = np.asarray(
        torch.where(ok, root_det / math.factorial(k), math.nan).cpu().numpy(), dtype=np.float64
    )
    return _summarise(
        volumes,
        seed=seed,
        dim=dim,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        what=f"Gaussian points in dimension {dim}",
    )


def gaussian_null_cv_exact(dim: int, k: int = 4) -> float:
    """Exact CV of the k-volume of a simplex of k+1 i.i.d. Gaussian points in R^dim.

    The edge matrix from vertex 0 is Gaussian with rows of covariance
    sigma^2 (I + 11^T), so det G = det(sigma^2 (I + 11^T)) det W with W ~
    Wishart_k(dim, I), and det W is a product of independent chi^2 variables
    with dim, dim-1, ..., dim-k+1 degrees of freedom (Bartlett). The volume is
    then a constant times a product of chi variables, whence

        CV^2 = prod_m E[chi_m^2] / E[chi_m]^2 - 1,  E[chi_m] = sqrt(2) G((m+1)/2) / G(m/2).

    It is the large-N limit of `gaussian_null_cv` (a check on it, and a null
    without sampling noise).
    """
    if k < 1 or dim < k:
        raise ValueError(f"a {k}-simplex has volume only in dim >= {k}, got dim={dim}")
    log_ratio = 0.0
    for m in range(dim - k + 1, dim + 1):
        log_mean = 0.5 * math.log(2.0) + math.lgamma((m + 1) / 2) - math.lgamma(m / 2)
        log_ratio += math.log(m) - 2.0 * log_mean
    return math.sqrt(math.expm1(log_ratio))
