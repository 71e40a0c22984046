"""Token-embedding geometry, weight tying and the pentachoron CV (terrain/checks/embedding.py)."""

from __future__ import annotations

import pytest

from terrain.property import PropertyCheck

pytestmark = pytest.mark.weights


def test_weight_tying_matches_config(evaluate: PropertyCheck) -> None:
    """Token-table copies and the LM head are tied exactly as the config declares."""
    evaluate("weight_tying")


def test_embedding_participation_ratio(evaluate: PropertyCheck) -> None:
    """Participation ratio of the token-embedding covariance per dimension."""
    evaluate("embedding_participation_ratio")


def test_embedding_mean_cosine(evaluate: PropertyCheck) -> None:
    """Mean pairwise cosine of a seeded sample of token embeddings."""
    evaluate("embedding_mean_cosine")


def test_embedding_simplex_cv_is_in_band(evaluate: PropertyCheck) -> None:
    """CV of Cayley–Menger volumes of random 5-token simplices, in the model's band."""
    evaluate("simplex_cv")
