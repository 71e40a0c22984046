"""Sparsity and cross-layer correlation measures, against values derived independently."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from terrain.measures.crosslayer import cosine_matrix
from terrain.measures.sparsity import role_sparsity


def test_fraction_below_thresholds_on_a_known_tensor() -> None:
    w = torch.tensor([0.0, 0.0005, -0.005, 0.05, -0.5, 2.0, 0.2, -0.09])
    result = role_sparsity("q", [w], thresholds=(1e-3, 1e-2, 1e-1))
    assert result.below == {1e-3: 2 / 8, 1e-2: 3 / 8, 1e-1: 5 / 8}
    assert result.n_values == 8


def test_pooling_over_tensors_weights_by_size() -> None:
    small = torch.zeros(2)  # all below
    large = torch.ones(6)  # none below
    assert role_sparsity("q", [small, large]).below[0.1] == pytest.approx(2 / 8)


def test_gaussian_scale_free_fraction_and_kurtosis() -> None:
    torch.manual_seed(0)
    w = torch.randn(400, 500)
    result = role_sparsity("q", [w])
    expected = 2 * stats.norm.cdf(0.1) - 1  # P(|z| < 0.1), computed by scipy
    assert result.scale_free == pytest.approx(expected, abs=0.003)
    assert abs(result.excess_kurtosis) < 0.05


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(min_value=1e-3, max_value=1e3), seed=st.integers(0, 2**16))
def test_scale_free_companion_ignores_weight_scale(scale: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(64, 64, generator=gen, dtype=torch.float64) ** 3  # heavy-tailed
    base = role_sparsity("q", [w])
    scaled = role_sparsity("q", [w * scale])
    assert scaled.scale_free == pytest.approx(base.scale_free, abs=2 / w.numel())
    assert scaled.excess_kurtosis == pytest.approx(base.excess_kurtosis, rel=1e-6)


def test_absolute_fraction_is_a_scale_effect() -> None:
    """Negative control: the thresholded fraction alone moves with scale, the companion does not."""
    torch.manual_seed(1)
    w = torch.randn(128, 128) * 0.02
    assert role_sparsity("q", [w]).below[0.1] == 1.0
    assert role_sparsity("q", [w * 100]).below[0.1] < 0.1


def test_tensor_path_agrees_with_the_numpy_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Accelerators count with torch, the CPU with NumPy: the two must give one answer.

    The torch path is forced on CPU tensors here so that it runs without an accelerator.
    Tensors of decreasing size reuse the scratch arrays of the first.
    """
    from terrain.measures import sparsity

    g = torch.Generator().manual_seed(3)
    tensors = [torch.randn(64, 48, generator=g) ** 3 * 0.01, torch.randn(10, 7, generator=g)]
    on_cpu = role_sparsity("q", tensors, thresholds=(1e-4, 1e-3, 1e-2, 1e-1))
    monkeypatch.setattr(sparsity, "_flat", lambda w: (w.detach().reshape(-1), torch))
    with_torch = role_sparsity("q", tensors, thresholds=(1e-4, 1e-3, 1e-2, 1e-1))
    assert with_torch.below == on_cpu.below
    assert with_torch.scale_free == on_cpu.scale_free
    assert with_torch.excess_kurtosis == pytest.approx(on_cpu.excess_kurtosis, rel=1e-9)
    exact = np.concatenate([t.double().reshape(-1).numpy() for t in tensors])
    assert on_cpu.below[1e-2] == np.mean(np.abs(exact) < 1e-2)


def test_bfloat16_tensors_are_counted() -> None:
    w = torch.tensor([0.0, 5e-4, 5e-3, 0.5], dtype=torch.bfloat16)
    assert role_sparsity("q", [w]).below == {1e-3: 0.5, 1e-2: 0.75, 1e-1: 0.75}


def test_cosine_matrix_identity_and_sign() -> None:
    a = torch.randn(30, 40)
    m = cosine_matrix([a, a * 3, -a])
    np.testing.assert_allclose(m, [[1, 1, -1], [1, 1, -1], [-1, -1, 1]], atol=1e-12)


def test_independent_layers_are_within_the_null() -> None:
    torch.manual_seed(2)
    layers = [torch.randn(256, 256) for _ in range(8)]
    m = cosine_matrix(layers)
    off = m[~np.eye(8, dtype=bool)]
    null_sd = 1 / math.sqrt(256 * 256)
    assert np.max(np.abs(off)) < 5 * null_sd
    assert np.std(off) == pytest.approx(null_sd, rel=0.5)


def test_shared_component_is_detected() -> None:
    """Negative control: layers that share a component correlate far above the null."""
    torch.manual_seed(3)
    shared = torch.randn(128, 128)
    layers = [shared + torch.randn(128, 128) for _ in range(4)]
    m = cosine_matrix(layers)
    assert np.min(np.diagonal(m, offset=1)) > 0.4


def test_cosine_matrix_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="must share a shape"):
        cosine_matrix([torch.zeros(2, 2), torch.zeros(4)])
    with pytest.raises(ValueError, match="at least two tensors"):
        cosine_matrix([torch.zeros(2)])
