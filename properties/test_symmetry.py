"""Exact weight symmetries, with negative controls that must fail (terrain/checks/symmetry.py)."""

from __future__ import annotations

import pytest

from terrain.property import PropertyCheck

pytestmark = pytest.mark.forward


def test_attention_output_is_gauge_invariant(evaluate: PropertyCheck) -> None:
    """Q^h → A Q^h, K^h → A^-T K^h per head (restricted by RoPE, q/k norms, GQA)."""
    evaluate("qk_gauge")


def test_value_output_gauge_is_invariant(evaluate: PropertyCheck) -> None:
    """V^h → B V^h, O^h → O^h B^-1 per value head (one B per GQA group)."""
    evaluate("vo_gauge")


def test_mlp_permutation_is_invariant(evaluate: PropertyCheck) -> None:
    """Hidden units of every MLP permuted consistently on the way in and out."""
    evaluate("mlp_permutation")


def test_mlp_unit_scaling_is_invariant(evaluate: PropertyCheck) -> None:
    """Per-unit c in, 1/c out: ReLU (c > 0) or a gated MLP's linear branch (c ≠ 0)."""
    evaluate("mlp_scaling")


def test_residual_rotation_is_invariant(evaluate: PropertyCheck) -> None:
    """RMSNorm gains folded into their readers, then the residual stream rotated."""
    evaluate("residual_rotation")
