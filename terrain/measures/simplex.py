"""Pentachoron CV: how uniform the volumes of random 5-token simplices are.

The research notes sample N random 5-subsets of the rows of an embedding
matrix E (V x D), compute the 4-volume of each simplex and report
CV = std(volumes) / mean(volumes) (population std). A Gaussian cloud of the
same dimension gives the null: its CV shrinks with D, so an embedding whose CV
stays well above the null at its D has volume structure (clusters, anisotropy,
near-duplicate rows) that isotropic noise does not.

Arithmetic. The research computes each volume from a 6x6 Cayley-Menger
determinant, one simplex at a time in Python. Here the same volume comes from
the k x k Gram matrix G of the edge vectors e_i = x_i - x_0:

    vol_k = sqrt(det G) / k!

which is the Cayley-Menger volume (both are |det[e_1 .. e_k]| / k! for the
k-flat they span) but better conditioned: it never forms the bordered matrix
whose determinant cancels terms of size max(d^2)^k. det G is taken by Gaussian
elimination without pivoting (stable for a symmetric positive semi-definite
G); its pivots are the squared distances of each edge from the span of the
previous ones, which also gives a scale-free test for degenerate simplices.

Memory and speed. Rows are gathered chunk by chunk into reused buffers
(chunk x (k+1) x D, never N x (k+1) x D), the edge Gram matrices come from one
batched matmul per chunk, and only N x k x k Gram entries are kept for the
float64 elimination. On CPU the gather and the Gram run in float32 for
float32 input; float64 input is measured in float64. On CUDA the Gram is
float64 by default: the GPU is not the bottleneck and float64 sidesteps TF32.

Accuracy. The Gram matrix squares the conditioning of the edge matrix, so a
float32 Gram loses accuracy on thin simplices: the relative error of a volume
is ~1e-7/h, where h = det G / prod(G_ii) in (0, 1] (Hadamard ratio: 1 for
orthogonal edges, 0 for a flat simplex). Simplices with h < 0.02 (~1% of
random MiniLM pentachora) are therefore recomputed from the same rows in
float64, which keeps every volume within ~1e-5 of the float64 loop.

Degenerate simplices. A simplex whose edges are (numerically) linearly
dependent has no meaningful volume; the reference drops those whose
Cayley-Menger value is <= 0 from rounding. Here a simplex is degenerate when
an elimination pivot is <= 0 or h <= degenerate_rtol (default 1e-10, with h
from the float64 computation: rounding perturbs h by ~sqrt(D) * 1e-16, far
below). `simplex_volumes` returns NaN for it and the CV excludes it, as the
reference does; `degenerate_rtol=0.0` keeps only the "det <= 0" rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from terrain.bootstrap import Interval, bootstrap_interval
from terrain.stats import coefficient_of_variation

__all__ = [
    "DEGENERATE_RTOL",
    "SimplexCV",
    "sample_simplex_indices",
    "simplex_cv",
    "simplex_volumes",
]

# Bytes of gathered rows per chunk. On CPU the chunk and its edge vectors should
# stay in L2 (measured on 2 cores with 2 MiB L2 each, D=384: 1 MiB is ~10% faster
# than 0.5 or 2-8 MiB); on a GPU a chunk only has to amortise kernel launches.
_CPU_CHUNK_BYTES = 1024 * 1024
_GPU_CHUNK_BYTES = 256 * 1024 * 1024
_MIN_CHUNK = 16

DEGENERATE_RTOL = 1e-10
"""Hadamard ratio det G / prod(G_ii) at or below which a simplex counts as degenerate."""

# A float32-Gram volume is redone in float64 below this Hadamard ratio (error ~1e-7/h).
_REFINE_BELOW = 0.02


@dataclass(frozen=True)
class SimplexCV:
    """The pentachoron CV of one point cloud, with its bootstrap interval.

    `volumes` holds the non-degenerate volumes the CV was computed from (for
    plots and re-analysis); it is left out of `as_dict`, equality and repr.
    """

    value: float
    interval: Interval
    n_simplices: int
    n_valid: int
    n_degenerate: int
    seed: int
    dim: int
    volumes: NDArray[np.float64] = field(repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """Plain Python values only (no numpy scalars), safe for JSON/YAML reports."""
        return {
            "value": float(self.value),
            "interval": self.interval.as_dict(),
            "n_simplices": int(self.n_simplices),
            "n_valid": int(self.n_valid),
            "n_degenerate": int(self.n_degenerate),
            "seed": int(self.seed),
            "dim": int(self.dim),
        }


def sample_simplex_indices(
    n_points: int, n_simplices: int, k: int = 4, *, rng: np.random.Generator
) -> NDArray[np.int64]:
    """Draw `n_simplices` rows of k+1 distinct indices into range(n_points).

    Each row is uniform over the ordered (k+1)-tuples of distinct indices, hence
    its set is uniform over the (k+1)-subsets, like `rng.choice(n, k+1,
    replace=False)` per simplex in the research loop, but vectorised: draw all
    rows with replacement and redraw only the rows that repeat an index
    (rejection keeps the distribution exact). For n_points >> k the first draw
    is accepted almost always; even at n_points = k+1 the acceptance rate is
    (k+1)!/(k+1)^(k+1) (4% for k=4), and each round is one vectorised call.
    """
    if k < 1:
        raise ValueError(f"simplex order k must be >= 1, got {k}")
    if n_simplices < 0:
        raise ValueError(f"n_simplices must be >= 0, got {n_simplices}")
    if n_points < k + 1:
        raise ValueError(
            f"a {k}-simplex needs {k + 1} distinct points, but only n_points={n_points} exist"
        )
    index = rng.integers(0, n_points, size=(n_simplices, k + 1), dtype=np.int64)
    redraw = _rows_with_repeats(index)
    while redraw.size:
        index[redraw] = rng.integers(0, n_points, size=(redraw.size, k + 1), dtype=np.int64)
        redraw = redraw[_rows_with_repeats(index[redraw])]
    return index


def _rows_with_repeats(index: NDArray[np.int64]) -> NDArray[np.intp]:
    """Positions of the rows of `index` that contain some value twice."""
    ordered = np.sort(index, axis=1)
    return np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))


def simplex_volumes(
    points: torch.Tensor,
    index: NDArray[np.int64],
    *,
    chunk_size: int | None = None,
    dtype: torch.dtype | None = None,
    degenerate_rtol: float = DEGENERATE_RTOL,
) -> NDArray[np.float64]:
    """k-volumes of the simplices `points[index[i]]`, batched; NaN marks a degenerate one.

    points: (n_points, D) floating tensor on any device (CPU or CUDA); it is
        read in place, never copied whole.
    index: (N, k+1) integer rows of distinct indices (see `sample_simplex_indices`).
    chunk_size: simplices per batch; None picks one from D and the device (a few
        MiB of gathered rows on CPU). Memory is O(chunk_size*(k+1)*D + N*k*k).
    dtype: dtype of the first-pass gather and Gram matmul. None: float64 for
        float64 input or a CUDA device, else float32. Thin simplices are always
        redone in float64 and the elimination is always float64.
    degenerate_rtol: a simplex with Hadamard ratio det G / prod(G_ii) <= this is
        degenerate (see the module docstring); 0.0 keeps only "det <= 0".

    Returns float64 volumes of shape (N,), aligned with `index`; the number of
    degenerate simplices is `np.isnan(result).sum()`. NaN rather than dropping
    keeps the result aligned with `index` and with `cayley_menger_volumes_loop`.
    """
    _check_points(points)
    return _simplex_volumes(points, index, chunk_size, dtype, degenerate_rtol)


def _simplex_volumes(
    points: torch.Tensor,
    index: NDArray[np.int64],
    chunk_size: int | None,
    dtype: torch.dtype | None,
    degenerate_rtol: float,
) -> NDArray[np.float64]:
    """`simplex_volumes` for points already checked (the finite check reads all of them)."""
    index = _check_index(index, int(points.shape[0]))
    if not degenerate_rtol >= 0.0:
        raise ValueError(f"degenerate_rtol must be >= 0, got {degenerate_rtol}")
    n, k = index.shape[0], index.shape[1] - 1
    compute = _compute_dtype(points, dtype)
    chunk = _chunk_size(chunk_size, k, int(points.shape[1]), compute, points.device)
    flat = torch.from_numpy(np.ascontiguousarray(index).reshape(-1)).to(points.device)

    gram = _edge_grams(points, flat, n, k, compute, chunk)
    root_det, hadamard, positive = _eliminate(gram)
    if compute != torch.float64:
        # also redo what over- or underflowed in float32 (h is then NaN or 0)
        redo = torch.nonzero(~(positive & (hadamard >= _REFINE_BELOW))).flatten()
        if redo.numel():
            rows = flat.view(n, k + 1)[redo].reshape(-1)
            gram64 = _edge_grams(points, rows, int(redo.numel()), k, torch.float64, chunk)
            root_det[redo], hadamard[redo], positive[redo] = _eliminate(gram64)
    ok = positive & (hadamard > degenerate_rtol)
    volumes = torch.where(ok, root_det / math.factorial(k), math.nan)
    return np.asarray(volumes.cpu().numpy(), dtype=np.float64)


def _edge_grams(
    points: torch.Tensor, flat: torch.Tensor, n: int, k: int, compute: torch.dtype, chunk: int
) -> torch.Tensor:
    """(n, k, k) Gram matrices of the edges x_i - x_0 of the simplices flat.view(n, k+1)."""
    dim = int(points.shape[1])
    chunk = min(chunk, max(n, 1))
    gram = torch.empty((n, k, k), dtype=compute, device=points.device)
    rows = torch.empty((chunk * (k + 1), dim), dtype=points.dtype, device=points.device)
    edges = torch.empty((chunk, k, dim), dtype=compute, device=points.device)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        gathered = torch.index_select(
            points, 0, flat[start * (k + 1) : (start + m) * (k + 1)], out=rows[: m * (k + 1)]
        ).view(m, k + 1, dim)
        if gathered.dtype != compute:
            gathered = gathered.to(compute)
        e = torch.sub(gathered[:, 1:], gathered[:, :1], out=edges[:m])
        torch.bmm(e, e.transpose(1, 2), out=gram[start : start + m])
    return gram


def _eliminate(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """sqrt(det G), det G / prod(G_ii) and "all pivots > 0", by float64 elimination.

    Gaussian elimination without pivoting is backward stable for a symmetric
    positive semi-definite G. Unrolled over the k(k+1)/2 upper-triangle
    entries, each a contiguous (N,) float64 vector: ~k^3/3 whole-array
    operations instead of strided k x k slices (3x faster for k=4), and one
    code path for every device.
    """
    n, k = gram.shape[0], gram.shape[1]
    upper = torch.triu_indices(k, k, device=gram.device)
    flat = gram[:, upper[0], upper[1]].to(torch.float64).T.contiguous()
    a = {(int(i), int(j)): flat[c] for c, (i, j) in enumerate(upper.T.tolist())}
    positive = torch.ones(n, dtype=torch.bool, device=gram.device)
    root_det = torch.ones(n, dtype=torch.float64, device=gram.device)
    hadamard = torch.ones(n, dtype=torch.float64, device=gram.device)
    for i in range(k):
        pivot = a[i, i]
        positive &= pivot > 0
        safe = torch.where(positive, pivot, 1.0)
        # products of sqrt(pivot) and pivot/G_ii: no overflow or underflow at any scale
        root_det *= torch.sqrt(safe)
        hadamard *= safe / torch.where(positive, flat[_diag_position(i, k)], 1.0)
        for j in range(i + 1, k):
            scaled = a[i, j] / safe
            for m in range(j, k):
                a[j, m] = a[j, m] - scaled * a[i, m]
    return root_det, torch.where(positive, hadamard, 0.0), positive


def _diag_position(i: int, k: int) -> int:
    """Position of (i, i) in the row-major upper triangle of a k x k matrix."""
    return i * k - i * (i - 1) // 2


def simplex_cv(
    points: torch.Tensor,
    *,
    n_simplices: int = 1000,
    seed: int = 0,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    chunk_size: int | None = None,
    dtype: torch.dtype | None = None,
    degenerate_rtol: float = DEGENERATE_RTOL,
) -> SimplexCV:
    """Pentachoron CV of the rows of `points` (e.g. an embedding matrix, V x D).

    Samples `n_simplices` 5-subsets of rows with np.random.default_rng(seed),
    so a (points, n_simplices, seed) triple always gives the same value; the
    bootstrap interval uses the same seed. Degenerate simplices are excluded
    and counted in `n_degenerate`.
    """
    _check_points(points)
    _check_n_simplices(n_simplices)
    rng = np.random.default_rng(seed)
    index = sample_simplex_indices(int(points.shape[0]), n_simplices, 4, rng=rng)
    volumes = _simplex_volumes(points, index, chunk_size, dtype, degenerate_rtol)
    return _summarise(
        volumes,
        seed=seed,
        dim=int(points.shape[1]),
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        what=f"points of shape {tuple(points.shape)}",
    )


def _summarise(
    volumes: NDArray[np.float64],
    *,
    seed: int,
    dim: int,
    n_bootstrap: int,
    confidence: float,
    what: str,
) -> SimplexCV:
    """CV of the valid volumes and its percentile-bootstrap interval."""
    valid = volumes[~np.isnan(volumes)]
    if valid.size < 2:
        raise ValueError(
            f"only {valid.size} of {volumes.size} simplices of {what} are non-degenerate; "
            "the CV needs at least 2 (are the points confined to fewer than 4 dimensions?)"
        )
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    value = float(coefficient_of_variation(valid))
    interval = bootstrap_interval(
        valid,
        coefficient_of_variation,
        seed=seed,
        n_resamples=n_bootstrap,
        confidence=confidence,
    )
    return SimplexCV(
        value=value,
        interval=interval,
        n_simplices=int(volumes.size),
        n_valid=int(valid.size),
        n_degenerate=int(volumes.size - valid.size),
        seed=int(seed),
        dim=int(dim),
        volumes=valid,
    )


# Values checked for finiteness at once (4M: 16 MiB of float32).
_CHECK_BLOCK = 1 << 22


def _check_points(points: torch.Tensor) -> None:
    """Reject what has no pentachoron CV, with the reason in the message."""
    if not isinstance(points, torch.Tensor):
        raise ValueError(f"points must be a torch.Tensor, got {type(points).__name__}")
    if points.ndim != 2:
        raise ValueError(f"points must be 2-D (n_points, dim), got shape {tuple(points.shape)}")
    if not points.is_floating_point():
        raise ValueError(f"points must be a floating-point tensor, got dtype {points.dtype}")
    # A plain sum is the cheapest full read (NaN and inf propagate); it runs on blocks of
    # rows, so that a large table in a low-precision dtype (a 7B model's bf16 token table,
    # memory-mapped) is never converted whole. Only a non-finite block looks closer.
    rows = max(1, _CHECK_BLOCK // max(1, points.shape[1]))
    bad = 0
    for start in range(0, points.shape[0], rows):
        block = points[start : start + rows]
        if not bool(torch.isfinite(block.sum())) and not bool(
            torch.isfinite(torch.stack(torch.aminmax(block))).all()
        ):
            bad += int((~torch.isfinite(block)).any(dim=1).sum())
    if bad:
        raise ValueError(f"points contain non-finite values (NaN or inf) in {bad} row(s)")


def _check_n_simplices(n_simplices: int) -> None:
    if n_simplices < 2:
        raise ValueError(f"n_simplices must be >= 2 for a CV, got {n_simplices}")


def _check_index(index: NDArray[np.int64], n_points: int) -> NDArray[np.int64]:
    idx = np.asarray(index)
    if idx.ndim != 2 or idx.shape[1] < 2:
        raise ValueError(f"index must have shape (N, k+1) with k >= 1, got {idx.shape}")
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"index must hold integers, got dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= n_points):
        raise ValueError(
            f"index values must lie in [0, {n_points}), got [{idx.min()}, {idx.max()}]"
        )
    return idx.astype(np.int64, copy=False)


def _compute_dtype(points: torch.Tensor, dtype: torch.dtype | None) -> torch.dtype:
    if dtype is not None:
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        return dtype
    if points.dtype == torch.float64 or points.device.type == "cuda":
        return torch.float64
    return torch.float32


def _chunk_size(
    chunk_size: int | None, k: int, dim: int, dtype: torch.dtype, device: torch.device
) -> int:
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        return chunk_size
    budget = _CPU_CHUNK_BYTES if device.type == "cpu" else _GPU_CHUNK_BYTES
    row_bytes = (k + 1) * max(dim, 1) * torch.finfo(dtype).bits // 8
    return max(_MIN_CHUNK, budget // row_bytes)
