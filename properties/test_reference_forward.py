"""The anatomy reproduces the model, and the call census matches the config
(terrain/checks/forward.py)."""

from __future__ import annotations

import pytest

from terrain.property import PropertyCheck

pytestmark = pytest.mark.forward


def test_anatomy_reproduces_block_output(evaluate: PropertyCheck) -> None:
    """A block recomputed from the anatomy's roles alone equals the library's block."""
    evaluate("reference_forward")


def test_module_call_census_matches_config(evaluate: PropertyCheck) -> None:
    """The module calls of one forward equal what the config predicts."""
    evaluate("module_call_census")
