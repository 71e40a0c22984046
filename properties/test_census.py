"""The anatomy census of the checkpoint matches its config (terrain/checks/census.py)."""

from __future__ import annotations

import pytest

from terrain.property import PropertyCheck

pytestmark = pytest.mark.weights


def test_anatomy_census_matches_config(evaluate: PropertyCheck) -> None:
    """Every tensor has a role or a reason; the counts equal the config's own module's."""
    evaluate("anatomy_census")
