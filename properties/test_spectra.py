"""Spectra of every projection beside Marchenko–Pastur (terrain/checks/spectra.py)."""

from __future__ import annotations

import pytest

from terrain.property import PropertyCheck

pytestmark = pytest.mark.weights


def test_stable_rank_against_marchenko_pastur(evaluate: PropertyCheck) -> None:
    """Stable rank over its Marchenko–Pastur value: about 1 at random init."""
    evaluate("spectral_stable_rank")


def test_participation_ratio_against_marchenko_pastur(evaluate: PropertyCheck) -> None:
    """Participation ratio (Σσ)²/Σσ² over its Marchenko–Pastur value."""
    evaluate("spectral_participation_ratio")


def test_condition_number(evaluate: PropertyCheck) -> None:
    """Condition number σ_max/σ_min of every projection, beside the null."""
    evaluate("spectral_condition_number")


def test_least_stable_rank_against_its_null(evaluate: PropertyCheck) -> None:
    """The least stable rank over every projection, beside the null of that minimum."""
    evaluate("spectral_stable_rank_min")
