"""The delta measures on hand-built tensors: relative change, cosine, and ΔW's spectrum."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from terrain.battery import DEFAULT_BUDGET
from terrain.measures.delta import PairNorms, pair_delta, pair_delta_bytes
from terrain.measures.esd import fit_power_law
from terrain.measures.kernels import BLOCK_BYTES, blocked_gram, inner_blocks
from terrain.measures.spectra import (
    effective_rank,
    marchenko_pastur_effective_rank,
    spectrum,
    squared_singular_values,
)


def _of_rank(rows: int, cols: int, singular: list[float], seed: int = 0) -> torch.Tensor:
    """U·diag(σ)·Vᵀ with orthonormal U, V: a matrix of exactly these singular values."""
    g = torch.Generator().manual_seed(seed)
    r = len(singular)
    u, _ = torch.linalg.qr(torch.randn(rows, r, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, r, generator=g, dtype=torch.float64))
    product: torch.Tensor = (u * torch.tensor(singular, dtype=torch.float64)) @ v.T
    return product


def _random(rows: int, cols: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=g, dtype=torch.float64) * 0.02


def test_relative_change_and_cosine_by_hand() -> None:
    base = torch.tensor([[3.0, 4.0]])  # ‖W₀‖ = 5
    doubled = pair_delta(base * 2, base, spectra=False).norms
    assert doubled.relative_change == 1.0
    assert doubled.cosine == 1.0
    turned = pair_delta(torch.tensor([[-4.0, 3.0]]), base, spectra=False).norms  # ⟂, same norm
    assert turned.relative_change == pytest.approx(math.sqrt(2.0), rel=1e-15)
    assert turned.cosine == 0.0
    flipped = pair_delta(-base, base, spectra=False).norms
    assert (flipped.relative_change, flipped.cosine) == (2.0, -1.0)
    tripled = pair_delta(base * 3, base, spectra=False).norms
    assert tripled.relative_change == 2.0


def test_an_unchanged_tensor_has_no_change_at_all() -> None:
    w = _random(24, 40)
    delta = pair_delta(w, w.clone(), spectra=True)
    assert delta.norms.relative_change == 0.0
    assert delta.norms.cosine == pytest.approx(1.0, abs=1e-15)
    assert delta.spectrum is not None
    s = delta.spectrum
    assert (s.rank, s.stable_rank, s.effective_rank, s.sv_max) == (0, 0.0, 0.0, 0.0)


def test_zero_base_tensors() -> None:
    zero = torch.zeros(8)
    assert pair_delta(zero, zero, spectra=False).norms.relative_change == 0.0
    grown = pair_delta(torch.ones(8), zero, spectra=False).norms
    assert math.isnan(grown.relative_change)  # trained from zero: no relative change
    assert math.isnan(grown.cosine)
    assert PairNorms(0.0, 0.0, 0.0, 0.0, 8).cosine == 1.0


@pytest.mark.parametrize("shape", [(64, 48), (48, 64)])
@pytest.mark.parametrize("r", [1, 3, 7])
def test_a_delta_of_rank_r_with_equal_singular_values(shape: tuple[int, int], r: int) -> None:
    """Equal σ: rank, stable rank and effective rank are all exactly r."""
    base = _random(*shape)
    w = base + _of_rank(*shape, [0.5] * r)
    s = pair_delta(w, base, spectra=True).spectrum
    assert s is not None
    assert s.n == min(shape)
    assert s.rank == r
    assert s.stable_rank == pytest.approx(r, rel=1e-9)
    assert s.effective_rank == pytest.approx(r, rel=1e-6)
    assert s.sv_max == pytest.approx(0.5, rel=1e-9)


def test_stable_and_effective_rank_of_unequal_singular_values() -> None:
    """σ = 3, 2, 1: stable rank (9 + 4 + 1)/9 = 14/9; effective rank exp H(3/6, 2/6, 1/6)."""
    base = _random(50, 30)
    s = pair_delta(base + _of_rank(50, 30, [3.0, 2.0, 1.0]), base, spectra=True).spectrum
    assert s is not None
    p = np.array([3.0, 2.0, 1.0]) / 6.0
    assert s.rank == 3
    assert s.stable_rank == pytest.approx(14.0 / 9.0, rel=1e-9)
    assert s.effective_rank == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-6)
    assert s.effective_rank == pytest.approx(2.749459, rel=1e-6)


def test_effective_rank_definition() -> None:
    assert effective_rank(torch.tensor([4.0, 4.0, 4.0, 0.0])).tolist() == pytest.approx([3.0])
    assert effective_rank(torch.zeros(5)).tolist() == [0.0]
    rows = effective_rank(torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]))
    assert rows.tolist() == pytest.approx([1.0, 2.0])


@pytest.mark.parametrize("shape", [(256, 256), (512, 128)])
def test_marchenko_pastur_effective_rank_is_that_of_a_random_matrix(
    shape: tuple[int, int],
) -> None:
    s2 = torch.linalg.svdvals(_random(*shape, seed=5)) ** 2
    measured = float(effective_rank(s2)[0])
    assert measured == pytest.approx(marchenko_pastur_effective_rank(*shape), rel=0.01)


def test_blocks_give_the_values_of_one_pass() -> None:
    """Blocked over rows (tall) or columns (wide), a stored bf16 pair gives the values of
    the whole tensors in float64."""
    for rows, cols in ((96, 40), (40, 96)):
        base = _random(rows, cols).to(torch.bfloat16)
        w = (base.double() + _of_rank(rows, cols, [0.3, 0.1])).to(torch.bfloat16)
        whole = pair_delta(w, base, spectra=True)
        outer = rows < cols
        tiny = 8 * (rows if outer else cols) * 7  # seven rows or columns a block
        assert len(inner_blocks((rows, cols), outer=outer, block_bytes=tiny)) > 5
        blocked = pair_delta(w, base, spectra=True, block_bytes=tiny)
        assert blocked.norms.relative_change == pytest.approx(
            whole.norms.relative_change, rel=1e-12
        )
        assert blocked.norms.cosine == pytest.approx(whole.norms.cosine, rel=1e-12)
        d = w.double() - base.double()
        assert whole.norms.delta_norm == pytest.approx(float(d.norm()), rel=1e-12)
        assert whole.norms.base_norm == pytest.approx(float(base.double().norm()), rel=1e-12)
        assert blocked.spectrum is not None
        assert whole.spectrum is not None
        assert blocked.spectrum.effective_rank == pytest.approx(
            whole.spectrum.effective_rank, rel=1e-9
        )
        assert blocked.spectrum.rank == whole.spectrum.rank


def test_blocked_gram_is_unchanged_by_its_block_helper() -> None:
    x = _random(70, 30).float()
    one = blocked_gram(x)
    many = blocked_gram(x, block_bytes=8 * 30 * 4)
    assert torch.allclose(one, many, rtol=1e-12, atol=1e-15)
    assert inner_blocks((70, 30), outer=False, block_bytes=8 * 30 * 4)[-1] == slice(68, 70)


def test_the_base_alpha_is_the_battery_alpha_of_the_base() -> None:
    """α of W₀ from the delta pass equals α of the battery's own spectrum of W₀."""
    base = _random(300, 120, seed=3).float()
    s = pair_delta(base * 1.5, base, spectra=True).spectrum
    assert s is not None
    battery = fit_power_law(spectrum(base))
    assert s.base_alpha.alpha == battery.alpha
    assert s.base_alpha.xmin == battery.xmin


def test_vectors_scalars_and_convolutions_get_norms_only() -> None:
    for shape in ((), (7,), (4, 3, 2, 2)):
        base = torch.full(shape, 2.0)
        delta = pair_delta(base * 3, base, spectra=True)
        assert delta.spectrum is None
        assert delta.norms.relative_change == 2.0
        assert delta.norms.size == max(1, math.prod(shape))


def test_shapes_must_agree() -> None:
    with pytest.raises(ValueError, match=r"a delta needs one shape, got \[2, 3\] and \[3, 2\]"):
        pair_delta(torch.zeros(2, 3), torch.zeros(3, 2), spectra=False)


def test_a_7b_shapes_largest_pairs_fit_the_batterys_budget() -> None:
    """The widest MLP map of a 7B decoder (11008 × 4096, spectra) and a 128k-token table
    (norms) each cost a fraction of the default budget, whatever their stored size."""
    mlp = pair_delta_bytes((11008, 4096), spectra=True)
    table = pair_delta_bytes((128256, 4096), spectra=False)
    assert mlp == 4 * BLOCK_BYTES + 4 * 8 * 4096**2  # 0.75 GiB
    assert table == 4 * BLOCK_BYTES
    assert mlp <= DEFAULT_BUDGET.bytes / 2  # two such pairs run side by side
    assert pair_delta_bytes((384,), spectra=False) == 4 * 8 * 384


def test_squared_singular_values_floor_keeps_a_low_rank_delta_low_rank() -> None:
    """The rounding of W − W₀ in float64 stays below the resolution rule: rank r exactly."""
    base = _random(128, 128)
    delta = _of_rank(128, 128, [1e-3, 5e-4])
    s2 = squared_singular_values(((base + delta) - base).T @ ((base + delta) - base))
    assert int((s2 > 0).sum()) == 2
