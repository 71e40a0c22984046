"""The research's claims, each judged on the real (pretrained) models of a run.

The findings page opens with this table: one row per headline claim of the research
(the seed notebook's summary and the seed scripts), one cell per real model with the
measured value, its null and interval, and a verdict in words. Random-init replicas never
appear here: they are the nulls, not evidence for or against a claim of training.

Verdicts:
- holds / does not hold: the property that tests the claim passed or failed its band on
  that model (or, for a claim with a figure of its own, the value lies inside it or not);
- forced by construction: the value is what the maths gives for any weights (e.g.
  Sylvester's law of inertia for the 0.500 QK balance), so it says nothing of training;
- not applicable: the model has no such part (no cross-attention, no relative position
  bias);
- not measurable here: the claim is about a model this run does not have (no real T5
  ships offline), or the property did not run;
- measured: the property has no band on that model; its value is shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from terrain.report.html import fmt, interval_text, null_text


@dataclass(frozen=True)
class Claim:
    text: str
    source: str
    property: str  # the property whose findings judge it
    figure: tuple[float, float] | None = None  # the claim's own band, where it states one
    construction: str | None = None  # why the value is forced whatever the weights
    about: str | None = None  # the models the claim is about, when none of them is here


_GAUGES = (
    ("per-head Q/K maps", "qk_gauge"),
    ("per-head V/O maps", "vo_gauge"),
    ("MLP unit permutations", "mlp_permutation"),
    ("MLP unit scalings", "mlp_scaling"),
    ("residual-stream rotations (norm gains folded)", "residual_rotation"),
)

CLAIMS: tuple[Claim, ...] = (
    Claim(
        "pentachoron (5-token simplex) volume CV 0.20–0.23",
        "seed notebook §1 (T5 and Qwen embeddings)",
        "simplex_cv",
        figure=(0.20, 0.23),
    ),
    Claim(
        "T5 Q sparsity (|w| < 0.1) rises 93.7 % → 99.4 % → 100 % from T5-small to T5-v1.1-XXL",
        "seed notebook §4–6",
        "q_sparsity",
        about="T5 checkpoints (no real T5 ships offline)",
    ),
    Claim(
        "cross-attention QK balance locked at 0.500 in all 24 layers",
        "seed notebook §6 (T5-v1.1-XXL)",
        "qk_cross_attention_balance",
        construction="a random product W_Q·W_Kᵀ is balanced by symmetry; its null is 0.5 too",
    ),
    Claim(
        "cross-layer weight correlation ≈ 0",
        "seed notebook §4",
        "crosslayer_corr",
    ),
    Claim(
        "0 mixed decoder position-bias heads",
        "seed notebook §6 (T5-v1.1-XXL)",
        "position_bias_mixed_heads",
    ),
    Claim(
        "a modulator boundary at α = 0.29154 (also written 0.29514 in the notebook)",
        "seed notebook §10, §13",
        "modulator_alpha_sweep",
    ),
    *(
        Claim(f"exact gauge freedom: {what}", "seed 002 (gauge freedoms of attention)", prop)
        for what, prop in _GAUGES
    ),
)


def _verdict(claim: Claim, finding: Mapping[str, Any] | None, skipped: str | None) -> str:
    if finding is None:
        if skipped and "not applicable" in skipped:
            return "not applicable"
        return "not measurable here"
    if claim.about is not None:
        return "not measurable here"  # this model's value is shown, but it is not the claim's
    if claim.construction is not None:
        return "forced by construction"
    if claim.figure is not None:
        low, high = claim.figure
        return "holds" if low <= float(finding["value"]) <= high else "does not hold"
    verdict = finding.get("verdict")
    if verdict == "pass":
        return "holds"
    if verdict == "fail":
        return "does not hold"
    return "measured"


def claim_rows(
    findings: Sequence[Mapping[str, Any]],
    real_models: Sequence[str],
    skips: Mapping[tuple[str, str], str],
) -> list[dict[str, Any]]:
    """One row per claim: per real model its value, null, interval and verdict in words.

    `skips` maps (model, property) to the reason a property did not run on a model."""
    by_key = {(f["model"], f["property"]): f for f in findings}
    rows = []
    for claim in CLAIMS:
        cells = []
        for model in real_models:
            finding = by_key.get((model, claim.property))
            verdict = _verdict(claim, finding, skips.get((model, claim.property)))
            cells.append(
                {
                    "model": model,
                    "verdict": verdict,
                    "value": fmt(finding["value"]) if finding else "—",
                    "null": null_text(finding) if finding else "",
                    "interval": interval_text(finding) if finding else "",
                }
            )
        rows.append(
            {
                "text": claim.text,
                "source": claim.source,
                "property": claim.property,
                "note": claim.construction or claim.about or "",
                "cells": cells,
            }
        )
    return rows
