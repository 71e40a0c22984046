"""Weight sparsity at fixed thresholds, with scale-free companions (terrain/checks/sparsity.py)."""

from __future__ import annotations

import pytest

from terrain.property import PropertyCheck

pytestmark = pytest.mark.weights


def test_q_projection_is_sparse(evaluate: PropertyCheck) -> None:
    """Most |W_Q| lie below the threshold (seed §4: T5-small Q 93.7% below 0.1)."""
    evaluate("q_sparsity")


def test_q_sparsity_is_not_only_weight_scale(evaluate: PropertyCheck) -> None:
    """The share of |W_Q| below 0.1·std, which weight scale alone cannot move."""
    evaluate("q_sparsity_scale_free")


def test_weight_sparsity_by_role(evaluate: PropertyCheck) -> None:
    """Share of |w| below 1e-4 … 1e-1 in every 2-D weight role, beside the null."""
    evaluate("weight_sparsity")


def test_weight_sparsity_scale_free(evaluate: PropertyCheck) -> None:
    """Share of |w| below 0.1·std of its own tensor, and the excess kurtosis, per role."""
    evaluate("weight_sparsity_scale_free")
