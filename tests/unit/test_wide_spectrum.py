"""The CPU route for wide matrices (float32 spectrum, float64 σ_min) against the float64
route, on matrices small enough to diagonalise both ways in a test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from terrain.measures import spectra as spectra_module
from terrain.measures.esd.shape import esd_shape_rows
from terrain.measures.spectra import smaller_gram, spectra_from_squared, spectrum
from terrain.measures.spectra import squared_singular_values as float64_route
from terrain.measures.wide_spectrum import (
    RESOLVED_SHARE,
    smallest_eigenvalue,
    wide_squared_singular_values,
)


def _reference(w: torch.Tensor) -> torch.Tensor:
    return float64_route(smaller_gram(w).unsqueeze(0))[0]


def _matrix(rows: int, cols: int, *, decay: float = 0.0, seed: int = 0) -> torch.Tensor:
    """A random float64 matrix whose singular values fall off as exp(-decay·i/n)."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(rows, rows, dtype=torch.float64, generator=g))
    v, _ = torch.linalg.qr(torch.randn(cols, cols, dtype=torch.float64, generator=g))
    n = min(rows, cols)
    s = torch.exp(-decay * torch.arange(n, dtype=torch.float64) / n)
    out: torch.Tensor = (u[:, :n] * s) @ v[:, :n].T * 0.02
    return out


CASES = {
    "square gaussian": torch.randn(400, 400, generator=torch.Generator().manual_seed(1)),
    "tall gaussian": torch.randn(900, 300, generator=torch.Generator().manual_seed(2)),
    "wide gaussian": torch.randn(300, 900, generator=torch.Generator().manual_seed(3)),
    "square, κ = e^6": _matrix(300, 300, decay=6.0).float(),
    "tall, κ = e^9": _matrix(700, 300, decay=9.0).float(),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_statistic_matches_the_float64_route(name: str) -> None:
    w = CASES[name]
    exact = spectra_from_squared(_reference(w))
    wide = spectra_from_squared(wide_squared_singular_values(w))
    for field in ("stable_rank", "eigen_participation_ratio"):
        np.testing.assert_allclose(getattr(wide, field), getattr(exact, field), rtol=1e-5)
    # (Σσ)²/Σσ² reads the small σ, whose float32 error grows with κ (module doc: about
    # 0.02·ε₃₂·κ measured on two CPUs); bounded here with five times that headroom.
    kappa = float(exact.condition[0])
    pr_rtol = max(1e-5, 0.1 * 2.0**-24 * kappa)  # ε₃₂ as the module doc: 2⁻²⁴
    np.testing.assert_allclose(wide.participation_ratio, exact.participation_ratio, rtol=pr_rtol)
    np.testing.assert_allclose(wide.sv_max, exact.sv_max, rtol=1e-5)
    assert abs(wide.active_fraction[0] - exact.active_fraction[0]) <= 1 / exact.n
    assert abs(int(wide.rank90[0]) - int(exact.rank90[0])) <= 1
    # σ_min: refined in float64 (κ > 10) to the float64 route's own error, n·ε₆₄·κ²
    # relative; kept from float32 (κ ≤ 10) within c·ε₃₂·κ², 1e-4 at κ = 10.
    refined = float(exact.condition[0]) > 10
    np.testing.assert_allclose(wide.sv_min, exact.sv_min, rtol=1e-6 if refined else 1e-4)
    np.testing.assert_allclose(wide.condition, exact.condition, rtol=1e-5 if refined else 1e-4)


def test_the_spectrum_shape_matches_the_float64_route() -> None:
    w = CASES["tall gaussian"]
    exact = esd_shape_rows(_reference(w).unsqueeze(0), (900, 300))
    wide = esd_shape_rows(wide_squared_singular_values(w).unsqueeze(0), (900, 300))
    np.testing.assert_allclose(wide.power_law.alpha, exact.power_law.alpha, rtol=1e-5)
    np.testing.assert_array_equal(wide.bulk.n_spikes, exact.bulk.n_spikes)
    np.testing.assert_allclose(wide.bulk.lambda_plus, exact.bulk.lambda_plus, rtol=1e-6)


def test_sigma_min_beyond_float32_resolution_is_refined() -> None:
    """κ = e^12 ≈ 1.6e5: float32 puts λ_min (2.6e-11 of λ_max) at rounding; the refined
    value matches the float64 route and the exact construction."""
    w = _matrix(300, 300, decay=12.0 * 300 / 299)
    float32_alone = torch.linalg.eigvalsh(smaller_gram(w).float()).double()
    exact_min = float(_reference(w)[-1])
    assert abs(float(float32_alone[0]) - exact_min) > 0.5 * exact_min  # float32: no digits
    refined = wide_squared_singular_values(w.float())
    assert float(refined[-1]) == pytest.approx(exact_min, rel=1e-5)
    assert float(refined[0]) / float(refined[-1]) == pytest.approx(math.exp(24.0), rel=1e-4)


def test_a_well_conditioned_matrix_keeps_its_float32_value() -> None:
    w = CASES["tall gaussian"]
    s2 = wide_squared_singular_values(w)
    assert float(s2[-1]) >= RESOLVED_SHARE * float(s2[0])  # no refinement needed here
    assert float(s2[-1]) == pytest.approx(float(_reference(w)[-1]), rel=1e-5)


@pytest.mark.parametrize("shape", [(200, 200), (400, 200)])
def test_a_singular_matrix_has_sigma_min_zero(shape: tuple[int, int]) -> None:
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(5))
    w[:, 7] = w[:, 3]  # rank deficient: κ is infinite, as on the float64 route
    s2 = wide_squared_singular_values(w)
    assert float(s2[-1]) == 0.0
    assert math.isinf(float(spectra_from_squared(s2).condition[0]))
    assert math.isinf(float(spectra_from_squared(_reference(w)).condition[0]))


def test_cholesky_gives_the_smallest_eigenvalue_of_a_positive_definite_gram() -> None:
    q, _ = torch.linalg.qr(torch.randn(50, 50, dtype=torch.float64))
    gram = (q * torch.logspace(0, -9, 50, dtype=torch.float64)) @ q.T
    assert smallest_eigenvalue(gram.clone()) == pytest.approx(1e-9, rel=1e-6)
    gram[0, 0] = -1.0  # not positive definite
    assert smallest_eigenvalue(gram) == 0.0


def test_bfloat16_input_is_measured_as_its_float32_values() -> None:
    w = CASES["square gaussian"].to(torch.bfloat16)
    np.testing.assert_allclose(
        wide_squared_singular_values(w).numpy(),
        wide_squared_singular_values(w.float()).numpy(),
        rtol=0,
        atol=0,
    )


def test_the_refined_value_is_reproducible() -> None:
    w = _matrix(300, 300, decay=8.0).float()
    assert torch.equal(wide_squared_singular_values(w), wide_squared_singular_values(w))


def test_spectrum_takes_the_wide_route_only_for_wide_rectangular_matrices_on_the_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tall = _matrix(500, 300, decay=8.0).float()
    square = _matrix(300, 300, decay=8.0).float()
    assert torch.equal(spectrum(tall), _reference(tall))  # 300 ≤ 2048: float64, unchanged
    monkeypatch.setattr(spectra_module, "FLOAT64_EIGEN_MAX_N", 299)
    assert torch.equal(spectrum(tall), wide_squared_singular_values(tall))
    assert torch.equal(spectrum(tall.T), wide_squared_singular_values(tall.T))
    assert torch.equal(spectrum(square), _reference(square))  # square: float64 always
