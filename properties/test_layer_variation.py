"""Layer variation after alignment by the exact gauge only (terrain/checks/forward.py)."""

from __future__ import annotations

import pytest

from terrain.property import PropertyCheck

pytestmark = pytest.mark.forward


def test_layer_variation_after_gauge_alignment(evaluate: PropertyCheck) -> None:
    """Consecutive layers' residual after the exact gauge alignment; the aligned copy's
    output must be unchanged."""
    evaluate("layer_variation")
