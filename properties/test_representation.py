"""Representation geometry of text models (terrain/checks/representation.py)."""

from __future__ import annotations

import pytest

from terrain.property import PropertyCheck

pytestmark = pytest.mark.forward


def test_digit_cosine_falls_with_numeric_distance(evaluate: PropertyCheck) -> None:
    """Digit-token cosines fall with |i − j|, beyond the random-init null."""
    evaluate("digit_manifold")


def test_semantic_categories_cluster(evaluate: PropertyCheck) -> None:
    """Semantic categories cluster above the vocabulary's mean, beyond the null."""
    evaluate("category_lift")


def test_layer_geometry_curves(evaluate: PropertyCheck) -> None:
    """Per-layer norm, cosine, PR and simplex CV curves beside the null."""
    evaluate("layer_geometry")
