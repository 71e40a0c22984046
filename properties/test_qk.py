"""The sign structure of the QK bilinear forms (terrain/checks/qk.py)."""

from __future__ import annotations

import pytest

from terrain.property import PropertyCheck

pytestmark = pytest.mark.weights


def test_qk_symmetric_part_balance(evaluate: PropertyCheck) -> None:
    """Positive share of the eigenvalues of sym(W_Q·W_Kᵀ), self-attention."""
    evaluate("qk_symmetric_balance")


def test_cross_attention_qk_balance(evaluate: PropertyCheck) -> None:
    """The seed's cross-attention balance 0.500, beside the null that is balanced too."""
    evaluate("qk_cross_attention_balance")


def test_qk_residual_form_inertia_is_forced(evaluate: PropertyCheck) -> None:
    """Sylvester's law of inertia: every full-rank head's residual form balances at 0.5."""
    evaluate("qk_residual_inertia")


def test_qk_positive_mass(evaluate: PropertyCheck) -> None:
    """The positive eigenvalue mass of each head's residual form: what training can move."""
    evaluate("qk_positive_mass")
