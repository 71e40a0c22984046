"""terrain.measures.esd against WeightWatcher 0.7.7 itself (the optional `bench` extra).

Skipped where WeightWatcher is not installed. Both sides see the same float32 weights:
WeightWatcher takes the SVD of W in float64 (scipy, on the CPU), terrain the eigenvalues
of the float64 Gram as the battery does; the two spectra agree to about M·ε·λ_max
(1e-13 of λ_max), far below any difference that could move a fit.

Tolerances and why:
- α, xmin, D, num_pl_spikes, sigma: relative 1e-9, counts exact. Same data (the same
  1e-5 floor), the same candidates (every datum but the largest), the same one-sided KS
  distance (`ks="weightwatcher"`), the same MLE; only rounding differs. (With
  `ks="two_sided"`, Clauset et al.'s exact supremum, xmin moves where D is flat: on the
  six matrices below α changed by 0 to −7.5 % where α < 5, and from 13.7 to 9.0 on one
  whose WeightWatcher tail holds 17 eigenvalues.)
- log_norm, log_spectral_norm, alpha_weighted, log_alpha_norm, stable_rank: relative 1e-9.
- entropy: absolute 1e-6. WeightWatcher adds 1e-10 to every p = λ/Σλ and to the rank
  (its RMT_Util.matrix_entropy), which moves the value by about 1e-7 at M = 384.
- matrix_rank: exact (full rank here; the Gram's resolution and WeightWatcher's tolerance
  disagree only for singular values between 1e-12 and 1e-7 of σ_max).
- spikes (its `mp_fit=True`) and traps (`randomize=True`, shuffled by NumPy's global
  generator, seeded here for the run): counts on matrices whose answer is not close —
  pure noise, planted spikes far above the edge, a few huge entries. WeightWatcher fits
  the bulk by a density fit, terrain by quantiles, so counts can differ near the edge
  and on heavy-tailed matrices (one 384 × 384 of Student-t(2.5) entries: 11 against 9).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from numpy.typing import NDArray

from terrain.measures.esd import correlation_trap, esd_shape, fit_power_law
from terrain.measures.spectra import smaller_gram, squared_singular_values

ww = pytest.importorskip(
    "weightwatcher", reason="WeightWatcher is the optional `bench` extra (pip install '.[bench]')"
)
# WeightWatcher 0.7.7 builds its details with a call pandas 3 deprecates.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Passing a dict to DataFrame.from_records is deprecated:DeprecationWarning"
)


@pytest.fixture(autouse=True)
def _quiet_weightwatcher() -> Iterator[None]:
    """WeightWatcher logs each layer at INFO/WARNING; keep the test log readable."""
    logger = logging.getLogger("weightwatcher")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def analyze(mats: list[NDArray[np.float64]], **options: Any) -> Any:
    """WeightWatcher's details, one row per matrix, from bias-free Linear layers (float32)."""
    layers = []
    for m in mats:
        layer = torch.nn.Linear(m.shape[1], m.shape[0], bias=False)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(m))
        layers.append(layer)
    details = ww.WeightWatcher(model=torch.nn.Sequential(*layers)).analyze(**options)
    assert len(details) == len(mats)
    return details


def battery_eigenvalues(m: NDArray[np.float64]) -> NDArray[np.float64]:
    w = torch.from_numpy(m).to(torch.float32)  # what the layer holds
    return squared_singular_values(smaller_gram(w).unsqueeze(0))[0].numpy()


def test_fit_equals_wwfit_on_the_same_eigenvalues() -> None:
    """The estimator alone, on identical data: WWFit's α, xmin, D, sigma, tail size."""
    wwfit = pytest.importorskip("weightwatcher.WW_powerlaw").WWFit

    rng = np.random.default_rng(20)
    for df, shape in [(1.5, (384, 384)), (2.0, (1536, 384)), (3.0, (300, 500))]:
        w = rng.standard_t(df, size=shape)
        lam = np.linalg.eigvalsh(w.T @ w if shape[0] >= shape[1] else w @ w.T)
        ours = fit_power_law(lam)
        theirs = wwfit(lam[lam > 1e-5])
        assert ours.alpha == pytest.approx(theirs.alpha, rel=1e-12)
        assert ours.xmin == theirs.xmin
        assert ours.ks_distance == pytest.approx(theirs.D, rel=1e-12)
        assert ours.alpha_se == pytest.approx(theirs.sigma, rel=1e-12)
        assert ours.n_tail == len(theirs.data)


def test_analyze_columns_agree_on_heavy_tailed_matrices() -> None:
    """Student-t entries (df 1.5, 2.5, 4: α from about 1.9 to 14) in 384 × 384 and
    1536 × 384 layers: terrain's values against `analyze()`'s columns (module docstring)."""
    rng = np.random.default_rng(7)
    mats = [
        rng.standard_t(df, size=shape)
        for df in (1.5, 2.5, 4.0)
        for shape in [(384, 384), (1536, 384)]
    ]
    details = analyze(mats)
    for i, m in enumerate(mats):
        row = details.iloc[i]
        esd = esd_shape(battery_eigenvalues(m), m.shape)
        fit, norms = esd.power_law, esd.norms
        assert fit.status == "ok"
        assert row["status"] == "success"
        close = {
            "alpha": fit.alpha,
            "xmin": fit.xmin,
            "D": fit.ks_distance,
            "sigma": fit.alpha_se,
            "log_norm": norms.log_norm,
            "log_spectral_norm": norms.log_spectral_norm,
            "alpha_weighted": norms.alpha_weighted,
            "log_alpha_norm": norms.log_alpha_norm,
            "stable_rank": norms.stable_rank,
            "lambda_max": norms.lambda_max,
        }
        for column, value in close.items():
            assert value == pytest.approx(float(row[column]), rel=1e-9), (i, column)
        assert fit.n_tail == int(row["num_pl_spikes"])
        assert norms.matrix_rank == int(row["matrix_rank"]) == 384
        assert math.isclose(norms.spectral_entropy, float(row["entropy"]), abs_tol=1e-6)


def planted(rng: np.random.Generator, shape: tuple[int, int], k: int) -> NDArray[np.float64]:
    g = rng.standard_normal(shape) * 0.02
    u = np.linalg.qr(rng.standard_normal((shape[0], k)))[0]
    v = np.linalg.qr(rng.standard_normal((shape[1], k)))[0]
    edge = 0.02 * (math.sqrt(shape[0]) + math.sqrt(shape[1]))
    spiked: NDArray[np.float64] = g + u @ np.diag(edge * np.linspace(3.0, 2.0, k)) @ v.T
    return spiked


def test_spike_and_trap_counts_agree_where_the_answer_is_clear() -> None:
    """Noise, 3 planted spikes and 5 entries of 100 sd in 384 × 384, and planted spikes in
    1536 × 384 (each matrix costs WeightWatcher two density fits, about a second each)."""
    rng = np.random.default_rng(3)
    noise = rng.standard_normal((384, 384)) * 0.02
    huge = noise.copy()
    huge.flat[rng.choice(noise.size, 5, replace=False)] = 2.0
    mats = [noise, planted(rng, (384, 384), 3), huge, planted(rng, (1536, 384), 3)]
    spikes = [0, 3, 5, 3]
    traps = [0, 0, 5, 0]
    state = np.random.get_state()
    np.random.seed(0)  # WeightWatcher shuffles with NumPy's global generator
    try:
        details = analyze(mats, mp_fit=True, randomize=True)
    finally:
        np.random.set_state(state)
    for i, m in enumerate(mats):
        row = details.iloc[i]
        assert esd_shape(battery_eigenvalues(m), m.shape).bulk.n_spikes == spikes[i]
        assert int(row["num_spikes"]) == spikes[i]
        assert int(row["num_traps"]) == traps[i]
        assert correlation_trap(m, seed=0).is_trap == (traps[i] > 0)
