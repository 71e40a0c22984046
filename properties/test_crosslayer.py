"""Near-zero correlation of weights across layers (terrain/checks/crosslayer.py)."""

from __future__ import annotations

import pytest

from terrain.property import PropertyCheck

pytestmark = pytest.mark.weights


def test_attention_weights_are_uncorrelated_across_layers(evaluate: PropertyCheck) -> None:
    """Adjacent layers' q/k/v/o weights have near-zero cosine (seed §4)."""
    evaluate("crosslayer_corr")


def test_mlp_and_other_weights_are_uncorrelated_across_layers(evaluate: PropertyCheck) -> None:
    """Adjacent layers' MLP and every other per-layer 2-D role have near-zero cosine."""
    evaluate("crosslayer_corr_mlp")
