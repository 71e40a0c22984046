"""The claims table: each research claim judged in words on the real models only."""

from __future__ import annotations

from typing import Any

from terrain.property import declarations
from terrain.report.claims import CLAIMS, claim_rows


def _finding(model: str, prop: str, value: float, verdict: str = "no-expectation") -> Any:
    return {"model": model, "property": prop, "value": value, "verdict": verdict, "null": None}


def _verdicts(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    return {r["property"]: [c["verdict"] for c in r["cells"]] for r in rows}


def test_every_claim_is_judged_by_a_declared_property() -> None:
    declared = set(declarations().names())
    assert {c.property for c in CLAIMS} <= declared


def test_verdicts_in_words() -> None:
    findings = [
        _finding("a", "simplex_cv", 0.21),
        _finding("b", "simplex_cv", 0.41),
        _finding("a", "q_sparsity", 0.999),
        _finding("a", "crosslayer_corr", 0.01, "pass"),
        _finding("b", "crosslayer_corr", 0.30, "fail"),
        _finding("a", "qk_cross_attention_balance", 0.5, "pass"),
        _finding("a", "modulator_alpha_sweep", 0.1),
    ]
    skips = {("b", "qk_cross_attention_balance"): "not applicable: no cross-attention"}
    got = _verdicts(claim_rows(findings, ["a", "b"], skips))
    assert got["simplex_cv"] == ["holds", "does not hold"]  # the claim's own 0.20–0.23
    assert got["q_sparsity"] == ["not measurable here", "not measurable here"]  # about T5
    assert got["crosslayer_corr"] == ["holds", "does not hold"]  # the property's verdict
    assert got["qk_cross_attention_balance"] == ["forced by construction", "not applicable"]
    assert got["modulator_alpha_sweep"] == ["measured", "not measurable here"]


def test_no_real_model_no_cells() -> None:
    rows = claim_rows([_finding("replica", "simplex_cv", 0.21)], [], {})
    assert all(r["cells"] == [] for r in rows)
