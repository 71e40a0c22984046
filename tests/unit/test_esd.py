"""ESD shape measures (terrain.measures.esd) against laws and values derived independently."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from scipy import integrate, optimize, stats

from terrain.measures.esd import (
    OK,
    TW1_QUANTILES,
    correlation_trap,
    esd_norms,
    esd_norms_rows,
    esd_shape,
    esd_shape_rows,
    fit_power_law,
    fit_power_law_rows,
    mp_bulk,
    mp_bulk_rows,
    mp_edges,
    mp_quantiles,
    shuffled,
    top_eigenvalue,
    tracy_widom_scale,
)
from terrain.measures.spectra import smaller_gram, squared_singular_values

SHAPES = [(384, 384), (1536, 384), (256, 768)]  # square, tall, wide


def battery_eigenvalues(w: NDArray[np.float64]) -> NDArray[np.float64]:
    """σ² of W as the battery computes them: float64 Gram, descending, unresolved → 0."""
    grams = smaller_gram(torch.from_numpy(w)).unsqueeze(0)
    return squared_singular_values(grams)[0].numpy()


def planted(
    rng: np.random.Generator, shape: tuple[int, int], strengths: list[float], sd: float = 0.02
) -> NDArray[np.float64]:
    """i.i.d. N(0, sd²) entries plus rank-one spikes u·vᵀ of singular value c·sd·(√N + √M)
    (c from `strengths`), with orthonormal random u's and v's."""
    rows, cols = shape
    w = rng.standard_normal(shape) * sd
    k = len(strengths)
    if k:
        u = np.linalg.qr(rng.standard_normal((rows, k)))[0]
        v = np.linalg.qr(rng.standard_normal((cols, k)))[0]
        edge = sd * (math.sqrt(rows) + math.sqrt(cols))
        w += u @ np.diag([c * edge for c in strengths]) @ v.T
    return w


def assert_same_values(got: object, expected: object) -> None:
    """Equal records, floats to rounding: a batch sums its rows with SIMD blocks that
    depend on each row's memory alignment, so a row's last bit can differ from a single."""
    __tracebackhide__ = True
    if isinstance(expected, dict):
        assert isinstance(got, dict)
        assert got.keys() == expected.keys()
        for key in expected:
            assert_same_values(got[key], expected[key])
    elif isinstance(expected, list):
        assert isinstance(got, list)
        assert len(got) == len(expected)
        for a, b in zip(got, expected, strict=True):
            assert_same_values(a, b)
    elif isinstance(expected, float) and not isinstance(got, bool):
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-300)
    else:
        assert got == expected


# ---------------------------------------------------------------- power-law tail


@pytest.mark.parametrize(("alpha", "seed"), [(1.5, 1), (2.0, 2), (3.0, 3), (4.0, 4), (5.0, 5)])
def test_alpha_of_pareto_samples_within_three_standard_errors(alpha: float, seed: int) -> None:
    """4000 draws of a Pareto law p(x) ∝ x^(−α), x ≥ 1: α̂ within 3 SE = 3(α̂ − 1)/√n_tail.

    Distinct seeds per α: with one seed the draws are one transform of another and every
    α would see the same z. Over 20 seeds the z of this estimator (xmin chosen by KS) had
    mean 0.4, sd 1.17 and |z| ≤ 2.5.
    """
    x = stats.pareto(b=alpha - 1.0).rvs(size=4000, random_state=np.random.default_rng(seed))
    fit = fit_power_law(x)
    assert fit.status == OK
    assert fit.alpha_se == pytest.approx((fit.alpha - 1.0) / math.sqrt(fit.n_tail))
    assert abs(fit.alpha - alpha) < 3.0 * fit.alpha_se, fit
    assert fit.n_tail >= 500  # the KS choice keeps most of a pure power law
    assert fit.xmin >= 1.0


def test_xmin_found_at_the_start_of_a_tail_above_a_bulk() -> None:
    """A uniform bulk on [0, 2] (3000 values) below a Pareto tail from 2 (1000 values,
    α = 2.5): xmin lands near 2 (not in the bulk, not deep in the tail), the tail holds
    most of the 1000, and α is within 3 SE; fitting from the smallest value instead
    would give α ≈ 1.3."""
    rng = np.random.default_rng(0)
    bulk = rng.uniform(0.0, 2.0, 3000)
    tail = stats.pareto(b=1.5, scale=2.0).rvs(size=1000, random_state=rng)
    fit = fit_power_law(np.concatenate([bulk, tail]))
    assert 1.9 <= fit.xmin <= 2.5, fit
    assert 800 <= fit.n_tail <= 1100, fit
    assert abs(fit.alpha - 2.5) < 3.0 * fit.alpha_se, fit
    whole = fit_power_law(np.concatenate([bulk, tail]), xmin_max=1e-3)  # forced into the bulk
    assert whole.alpha < 2.0


def test_two_sided_ks_distance_is_scipys_kstest_statistic() -> None:
    """`ks="two_sided"` reports the exact KS supremum: scipy's kstest of the tail against
    the fitted Pareto law gives the same D; WeightWatcher's one-sided D is at most it."""
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.uniform(0, 1, 500), stats.pareto(b=2.0).rvs(400, random_state=rng)])
    fit = fit_power_law(x, ks="two_sided")
    tail = np.sort(x[x >= fit.xmin])
    assert tail.size == fit.n_tail
    law = stats.pareto(b=fit.alpha - 1.0, scale=fit.xmin)
    assert fit.ks_distance == pytest.approx(stats.kstest(tail, law.cdf).statistic, rel=1e-12)
    one_sided = fit_power_law(tail, min_tail=tail.size, min_evals=tail.size)  # one candidate
    assert one_sided.xmin == fit.xmin
    assert one_sided.alpha == pytest.approx(fit.alpha, rel=1e-12)
    assert one_sided.ks_distance <= fit.ks_distance <= one_sided.ks_distance + 1 / fit.n_tail


def test_fit_ignores_order_type_and_floor_values() -> None:
    rng = np.random.default_rng(3)
    x = stats.pareto(b=1.0).rvs(300, random_state=rng)
    base = fit_power_law(x)
    with_floor = np.concatenate([x, np.zeros(50), np.full(5, 1e-6), [-1e-12]])
    for variant in (x[::-1], torch.from_numpy(x), rng.permutation(with_floor)):
        got = fit_power_law(variant)
        assert (got.alpha, got.xmin, got.n_tail) == (base.alpha, base.xmin, base.n_tail)
    assert fit_power_law(with_floor).n_fitted == 300


def test_rows_are_fit_one_by_one() -> None:
    rng = np.random.default_rng(4)
    rows = stats.pareto(b=1.5).rvs((3, 200), random_state=rng)
    rows[1, :190] = 0.0  # too few above the floor
    batch = fit_power_law_rows(rows)  # fit row by row, so identical to single fits
    assert len(batch) == 3
    for i in (0, 2):
        single = fit_power_law(rows[i])
        assert batch.row(i) == single
    assert batch.status[1] == "10 eigenvalues above the floor 1e-05, need 20"
    assert math.isnan(batch.alpha[1])


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (np.array([]), "no eigenvalues"),
        (np.zeros(50), "all eigenvalues are 0"),
        (np.array([1.0, np.nan, 2.0] * 10), "non-finite eigenvalues"),
        (np.array([1.0, np.inf] * 10), "non-finite eigenvalues"),
        (np.arange(1.0, 11.0), "10 eigenvalues above the floor 1e-05, need 20"),
        (np.full(30, 1e-6), "0 eigenvalues above the floor 1e-05, need 20"),
        (np.full(30, 3.0), "no candidate tail has a finite exponent (equal eigenvalues)"),
    ],
)
def test_degenerate_spectra_give_nan_and_a_reason(values: NDArray[np.float64], reason: str) -> None:
    fit = fit_power_law(values)
    assert fit.status == reason
    assert not fit.ok
    assert math.isnan(fit.alpha)
    assert math.isnan(fit.xmin)
    assert math.isnan(fit.alpha_se)
    assert fit.n_tail == 0
    json.dumps(fit.as_dict(), allow_nan=False)


def test_invalid_options_raise() -> None:
    x = np.arange(1.0, 40.0)
    with pytest.raises(ValueError, match="min_tail must be at least 2"):
        fit_power_law(x, min_tail=1)
    with pytest.raises(ValueError, match="floor must be a finite value"):
        fit_power_law(x, floor=-1.0)
    with pytest.raises(ValueError, match=r"min_evals \(5\) must be at least min_tail \(8\)"):
        fit_power_law(x, min_evals=5, min_tail=8)
    with pytest.raises(ValueError, match="ks must be"):
        fit_power_law(x, ks="one_sided")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one spectrum expected, got 2 rows"):
        fit_power_law(np.ones((2, 30)))


# ---------------------------------------------------------------- WeightWatcher's norms


def test_norms_of_a_known_spectrum() -> None:
    """λ = (4, 1, 1, 0) of a 6 × 4 matrix, α = 2, each metric computed by hand."""
    norms = esd_norms(np.array([0.0, 1.0, 4.0, 1.0]), (6, 4), alpha=2.0)
    assert norms.status == OK
    assert norms.norm == 6.0
    assert norms.lambda_max == 4.0
    assert norms.log_norm == pytest.approx(math.log10(6.0))
    assert norms.log_spectral_norm == pytest.approx(math.log10(4.0))
    assert norms.alpha_weighted == pytest.approx(2.0 * math.log10(4.0))
    assert norms.log_alpha_norm == pytest.approx(math.log10(16.0 + 1.0 + 1.0))
    assert norms.stable_rank == pytest.approx(1.5)
    assert norms.matrix_rank == 3
    p = np.array([4.0, 1.0, 1.0]) / 6.0
    assert norms.spectral_entropy == pytest.approx(stats.entropy(p) / math.log(3.0))
    assert json.loads(json.dumps(norms.as_dict(), allow_nan=False))["matrix_rank"] == 3


def test_rank_is_numpys_matrix_rank_on_a_rank_deficient_matrix() -> None:
    """W = A·B of rank 40 in a 200 × 100 matrix: the Gram's eigenvalues of the null space
    are rounding noise (~M·ε·λ_max), which the rank must not count, from raw eigvalsh
    output as from the battery's (which sets them to 0)."""
    rng = np.random.default_rng(5)
    w = rng.standard_normal((200, 40)) @ rng.standard_normal((40, 100))
    assert np.linalg.matrix_rank(w) == 40
    raw = np.linalg.eigvalsh(w.T @ w)
    assert (raw[:60] != 0).any()  # the noise is there
    assert esd_norms(raw, w.shape, alpha=2.0).matrix_rank == 40
    assert esd_norms(battery_eigenvalues(w), w.shape, alpha=2.0).matrix_rank == 40
    svd = np.linalg.svd(w, compute_uv=False) ** 2
    assert esd_norms(svd, w.shape, alpha=2.0, from_gram=False).matrix_rank == 40


def test_rank_one_has_zero_entropy_and_large_alpha_does_not_overflow() -> None:
    norms = esd_norms(np.array([0.0, 0.0, 9.0]), (5, 3), alpha=400.0)
    assert norms.matrix_rank == 1
    assert norms.spectral_entropy == 0.0
    assert norms.log_alpha_norm == pytest.approx(400.0 * math.log10(9.0))  # 9^400 > 1e308


def test_norms_of_failed_fits_and_degenerate_rows() -> None:
    rows = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [1.0, np.nan, 1.0]])
    norms = esd_norms_rows(rows, (4, 3), [np.nan, 2.0, 2.0])
    assert norms.status == (OK, "all eigenvalues are 0", "non-finite eigenvalues")
    assert norms.log_norm[0] == pytest.approx(math.log10(6.0))
    assert math.isnan(norms.alpha_weighted[0])
    assert math.isnan(norms.log_alpha_norm[0])
    assert np.isnan(norms.log_norm[1:]).all()
    assert (norms.matrix_rank[1:] == 0).all()


def test_shape_mismatch_raises() -> None:
    with pytest.raises(
        ValueError, match=r"shape \(6, 5\) has 5 squared singular values, got rows of 4"
    ):
        esd_norms(np.ones(4), (6, 5), alpha=2.0)
    with pytest.raises(ValueError, match="two positive dimensions"):
        mp_bulk(np.ones(4), (4,))


# ---------------------------------------------------------------- Marchenko–Pastur bulk


def mp_cdf_by_quadrature(y: float, x: float) -> float:
    a, b = (1 - math.sqrt(y)) ** 2, (1 + math.sqrt(y)) ** 2

    def density(t: float) -> float:
        return math.sqrt(max((b - t) * (t - a), 0.0)) / (2 * math.pi * y * t)

    return float(integrate.quad(density, a, min(max(x, a), b), limit=200)[0])


@pytest.mark.parametrize("y", [1.0, 0.25, 0.5])
def test_mp_quantiles_match_quadrature_of_the_density(y: float) -> None:
    """The θ-grid quantiles against scipy's quad of the MP density, inverted by brentq."""
    a, b = (1 - math.sqrt(y)) ** 2, (1 + math.sqrt(y)) ** 2
    for p in (0.05, 0.1, 0.5, 0.75, 0.9):
        exact = optimize.brentq(lambda x, p=p: mp_cdf_by_quadrature(y, x) - p, a + 1e-12, b)
        assert mp_quantiles(y, [p])[0] == pytest.approx(exact, abs=1e-6)
    with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
        mp_quantiles(4.0, [0.5])


def test_edges_and_tracy_widom_scale_formulas() -> None:
    assert mp_edges((100, 400), 2.0) == pytest.approx((2.0 * 10.0**2, 2.0 * 30.0**2))
    assert tracy_widom_scale((400, 100), 2.0) == pytest.approx(2.0 * 30.0 * (0.15) ** (1 / 3))


def test_tracy_widom_scale_matches_simulated_largest_eigenvalues() -> None:
    """(λ_max − λ+)/s_TW of 200 Gaussian 200 × 100 matrices (v = 1) has TW₁'s spread,
    sd 1.268 (mean −1.21, pulled lower at this size): a scale off by a power (no cube
    root, or 1/2 instead of 1/3) would give an sd off by a factor 2 or more."""
    rng = np.random.default_rng(6)
    g = rng.standard_normal((200, 200, 100))
    top = np.linalg.eigvalsh(np.einsum("rij,rik->rjk", g, g))[:, -1]
    z = (top - mp_edges((200, 100), 1.0)[1]) / tracy_widom_scale((200, 100), 1.0)
    assert 1.1 < z.std() < 1.45
    assert -1.7 < z.mean() < -1.0
    assert (z > TW1_QUANTILES[0.999]).sum() <= 1


@pytest.mark.parametrize("shape", SHAPES)
def test_planted_spikes_are_counted_exactly(shape: tuple[int, int]) -> None:
    """k = 3 rank-one spikes of singular value 2–3× the bulk edge's in N(0, 0.02²)
    noise: exactly 3 spikes, λ+ within 2 % of v(√N + √M)², and none without the spikes."""
    rng = np.random.default_rng(sum(shape))
    truth = mp_edges(shape, 0.02**2)[1]
    for strengths in ([3.0, 2.5, 2.0], []):
        lam = battery_eigenvalues(planted(rng, shape, strengths))
        bulk = mp_bulk(lam, shape)
        assert bulk.status == OK
        assert bulk.n_spikes == len(strengths), bulk
        assert bulk.lambda_plus == pytest.approx(truth, rel=0.02)
        assert bulk.variance == pytest.approx(0.02**2, rel=0.02)
        top = np.sort(lam)[::-1][: len(strengths)]
        assert bulk.spike_mass_share == pytest.approx(top.sum() / lam.sum())
        assert bulk.q == max(shape) / min(shape)


def test_gaussian_matrices_rarely_show_a_false_spike() -> None:
    """100 Gaussian 128 × 128 matrices through the batch helper: the estimated edge plus
    the TW₁ 99.9 % margin is crossed at most twice (expected: well under 1)."""
    rng = np.random.default_rng(7)
    g = rng.standard_normal((100, 128, 128))
    rows = np.linalg.eigvalsh(np.einsum("rij,rik->rjk", g, g))
    bulk = mp_bulk_rows(rows, (128, 128))
    assert bulk.status == (OK,) * 100
    assert bulk.n_spikes.sum() <= 2
    # v̂ errs by 1.3 % (sd) here: 1.1 % is the sample's own Frobenius norm, √(2/128²).
    assert np.std(bulk.variance - 1.0) < 0.02
    assert np.abs(bulk.variance - 1.0).max() < 0.06
    assert_same_values(bulk.row(5).as_dict(), mp_bulk(rows[5], (128, 128)).as_dict())


def test_degenerate_bulks() -> None:
    low_rank = np.zeros(100)
    low_rank[-10:] = 1.0  # 90 % of the eigenvalues are 0: no bulk to fit
    bulk = mp_bulk(low_rank, (100, 100))
    assert bulk.status == "the bulk is empty: the eigenvalues at ranks 5 %–75 % are 0"
    assert math.isnan(bulk.lambda_plus)
    assert bulk.n_spikes == 0
    assert mp_bulk(np.ones(4), (10, 4)).status == "4 eigenvalues, a bulk needs 8"
    assert mp_bulk(np.full(20, np.nan), (20, 20)).status == "non-finite eigenvalues"
    json.dumps(bulk.as_dict(), allow_nan=False)


# ---------------------------------------------------------------- correlation traps


def test_shuffle_is_seeded_and_a_permutation() -> None:
    w = np.random.default_rng(8).standard_normal((50, 70))
    a, b, c = shuffled(w, 1), shuffled(w, 1), shuffled(w, 2)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.array_equal(np.sort(a, axis=None), np.sort(w, axis=None))
    assert a.shape == w.shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shuffle_is_the_entries_gathered_by_the_seeds_permutation(dtype: type) -> None:
    """The permutation every recorded trap was measured with: a[PCG64(seed).permutation]."""
    w: NDArray[np.floating[Any]] = np.random.default_rng(8).standard_normal((40, 90)).astype(dtype)
    expected = w.reshape(-1)[np.random.Generator(np.random.PCG64(5)).permutation(w.size)]
    assert np.array_equal(shuffled(w, 5), expected.reshape(w.shape))


@pytest.mark.parametrize("shape", [(300, 300), (600, 200), (200, 600)])
def test_traps_reproducible_absent_for_gaussian_present_for_huge_entries(
    shape: tuple[int, int],
) -> None:
    rng = np.random.default_rng(9)
    g = rng.standard_normal(shape) * 0.02
    first, again, other = (correlation_trap(g, seed=s) for s in (3, 3, 4))
    assert first == again  # same seed: the same shuffle and start vector, the same value
    assert first.lambda_max != other.lambda_max
    for result in (first, other):
        assert result.status == OK
        assert result.seed in (3, 4)
        assert not result.is_trap, result
        assert abs(result.ratio - 1.0) < 0.05
    huge = g.copy()
    huge.flat[rng.choice(g.size, 5, replace=False)] = 2.0  # 100 sd: each adds λ ≈ 4
    trapped = correlation_trap(huge, seed=3)
    assert trapped.is_trap, trapped
    assert trapped.ratio > 2.0
    # Planted low-rank structure is a spike of W but no trap: shuffling destroys it.
    spiked = planted(rng, shape, [3.0, 2.5])
    assert mp_bulk(battery_eigenvalues(spiked), shape).n_spikes == 2
    assert not correlation_trap(spiked, seed=3).is_trap
    json.dumps(trapped.as_dict(), allow_nan=False)


def test_top_eigenvalue_by_lanczos_equals_the_dense_one() -> None:
    rng = np.random.default_rng(10)
    for shape in [(40, 30), (500, 200), (200, 500)]:
        w = rng.standard_t(3, size=shape)
        exact = np.linalg.svd(w, compute_uv=False)[0] ** 2
        assert top_eigenvalue(w) == pytest.approx(exact, rel=1e-9)
        assert top_eigenvalue(torch.from_numpy(w).to(torch.bfloat16)) == pytest.approx(
            exact, rel=0.02
        )


def test_degenerate_traps() -> None:
    constant = correlation_trap(np.ones((100, 100)), seed=0)
    assert constant.status == "constant entries: no MP bulk"
    assert not constant.is_trap
    assert math.isnan(constant.ratio)
    bad = np.zeros((100, 100))
    bad[0, 0] = np.nan
    assert correlation_trap(bad, seed=0).status == "non-finite entries"
    json.dumps(constant.as_dict(), allow_nan=False)
    with pytest.raises(ValueError, match="seed must be"):
        correlation_trap(np.ones((3, 3)), seed=-1)


# ---------------------------------------------------------------- everything together


def test_shape_rows_of_one_role_equal_the_single_matrix_measures() -> None:
    rng = np.random.default_rng(12)
    shape = (192, 64)
    rows = np.stack([battery_eigenvalues(rng.standard_t(2.5, size=shape)) for _ in range(4)])
    batch = esd_shape_rows(torch.from_numpy(rows), shape)
    assert len(batch) == 4
    for i in range(4):
        single = esd_shape(rows[i], shape)
        assert batch.row(i).power_law == single.power_law  # fit row by row: identical
        assert_same_values(batch.row(i).as_dict(), single.as_dict())
        assert single.norms.alpha_weighted == pytest.approx(
            single.power_law.alpha * math.log10(rows[i].max())
        )
    record = json.loads(json.dumps(batch.as_dict(), allow_nan=False))
    assert record["shape"] == [192, 64]
    assert len(record["rows"]) == 4
    assert set(record["rows"][0]) == {"shape", "power_law", "norms", "bulk"}


def test_esd_of_a_null_without_projection_spectra_has_no_value_and_says_why() -> None:
    """A large model's nulls hold no spectra of wide projections: the null is absent (no
    crash on the empty list), and the page shows the reason instead of a dash."""
    from terrain.battery import BatteryResult
    from terrain.checks import esd
    from terrain.report.html import null_text

    empty = BatteryResult("null", "olmo3", "cpu")
    assert esd._median_alpha(empty) is None
    assert esd._spike_share(empty) is None
    assert null_text({"null": None, "details": {"null_note": esd.NO_SAMPLED_NULL}}).startswith(
        "no sampled null"
    )
    assert null_text({"null": None}) == "—"
