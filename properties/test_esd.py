"""The shape of every projection's eigenvalue spectrum (terrain/checks/esd.py)."""

from __future__ import annotations

import pytest

from terrain.property import PropertyCheck

pytestmark = pytest.mark.weights


def test_power_law_tail_exponent(evaluate: PropertyCheck) -> None:
    """α of every projection's spectral tail, beside the null (WeightWatcher's band opt-in)."""
    evaluate("esd_alpha")


def test_spikes_above_the_marchenko_pastur_bulk(evaluate: PropertyCheck) -> None:
    """Eigenvalues above the MP edge + Tracy–Widom margin: none at random init."""
    evaluate("esd_spikes")


def test_entry_shuffled_projections_have_no_correlation_traps(evaluate: PropertyCheck) -> None:
    """λ_max of each seeded entry-shuffled projection against its MP edge: none at random init."""
    evaluate("esd_correlation_traps")
