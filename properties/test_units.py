"""Dead MLP units, norm gains and position-bias heads (terrain/checks/units.py)."""

from __future__ import annotations

import pytest

from terrain.property import PropertyCheck

pytestmark = pytest.mark.weights


def test_mlp_dead_neurons(evaluate: PropertyCheck) -> None:
    """Share of MLP units whose combined norm is below 1% of the layer mean; none at init."""
    evaluate("mlp_dead_neurons")


def test_mlp_dead_gates(evaluate: PropertyCheck) -> None:
    """Gated MLPs: share of units whose gate row alone is below 1% of the mean."""
    evaluate("mlp_dead_gates")


def test_norm_gain_statistics(evaluate: PropertyCheck) -> None:
    """Per-layer statistics of every norm gain; the headline is the spread std(γ)."""
    evaluate("norm_gain_spread")


def test_norm_gain_directions(evaluate: PropertyCheck) -> None:
    """Whether the layers' unit gain directions share one preferred axis."""
    evaluate("norm_gain_directions")


def test_relative_position_bias_head_classes(evaluate: PropertyCheck) -> None:
    """Share of relative-position-bias heads that are neither local nor global."""
    evaluate("position_bias_mixed_heads")
