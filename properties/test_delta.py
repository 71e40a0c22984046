"""What changed against the base model given by --base-model (terrain/checks/delta.py);
not applicable without one."""

from __future__ import annotations

import pytest

from terrain.property import PropertyCheck

pytestmark = pytest.mark.weights


def test_no_tensor_moved_beyond_the_band_from_the_base(evaluate: PropertyCheck) -> None:
    """‖W − W₀‖/‖W₀‖ of every tensor shared with the base, the largest within `max`."""
    evaluate("delta_relative_change")


def test_the_change_from_the_base_is_low_rank(evaluate: PropertyCheck) -> None:
    """Effective rank of ΔW = W − W₀ of every per-layer map, the largest within `max`."""
    evaluate("delta_effective_rank")


def test_tail_exponent_against_the_base(evaluate: PropertyCheck) -> None:
    """α of every map against the base model's α of the same map (measured)."""
    evaluate("delta_alpha")
