"""Residual modulators attached by hooks (terrain/checks/modulators.py)."""

from __future__ import annotations

import pytest

from terrain.property import PropertyCheck

pytestmark = pytest.mark.forward


def test_lerp_modulator_at_alpha_zero_is_exact(evaluate: PropertyCheck) -> None:
    """A LERP modulator at α = 0 leaves the output bit-identical."""
    evaluate("modulator_lerp_alpha0")


def test_field_modulator_at_alpha_zero_is_exact(evaluate: PropertyCheck) -> None:
    """A field modulator at α = 0 (clamp bypassed) leaves the output bit-identical."""
    evaluate("modulator_field_alpha0")


def test_field_modulator_never_touches_its_null_space(evaluate: PropertyCheck) -> None:
    """The field modulator's null space is copied through untouched, for any α."""
    evaluate("modulator_null_space")


def test_detaching_a_modulator_restores_the_model(evaluate: PropertyCheck) -> None:
    """Detaching restores the model exactly (output and state dict)."""
    evaluate("modulator_detach")


def test_one_training_step_moves_only_the_modulator(evaluate: PropertyCheck) -> None:
    """One training step moves the modulator and nothing of the model."""
    evaluate("modulator_training_step")


def test_alpha_sweep_of_layer_drift(evaluate: PropertyCheck) -> None:
    """Per-layer drift for α in 0 … 0.35, the notebook's boundary marked (measured)."""
    evaluate("modulator_alpha_sweep")
