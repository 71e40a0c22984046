"""Dead MLP neurons (seed notebook §4–6): hidden units whose combined weight norm
(up·down, gated: gate·up·down) is below 1% of the layer's mean (weak: below 10%).

At random init each per-unit norm is a chi variable concentrated at its mean, so a
replica has no dead unit (asserted for random-init models: probability far below 1e-30
per unit at width ≥ 32). A trained model's count is measured beside the replica's.
"""

from __future__ import annotations

import numpy as np
import pytest

from plugins.assertions import check
from plugins.recording import Recorder
from terrain.battery import battery_of, null_battery_of
from terrain.findings import Expected, Finding, Null
from terrain.measures.mlp import MLPLayer
from terrain.model import LoadedModel
from terrain.report.battery_plots import ratio_histogram
from terrain.report.evidence import Evidence

pytestmark = pytest.mark.weights

NULL_KIND = "random-init replica of the same config"
CONCENTRATION = "chi concentration of random-init row norms: no unit below 1% of the mean"


def _fraction(layers: list[MLPLayer], attr: str) -> float:
    return float(sum(getattr(m, attr) for m in layers)) / sum(m.d_ff for m in layers)


def test_mlp_dead_neurons(model: LoadedModel, record_finding: Recorder) -> None:
    """Share of MLP hidden units whose combined norm (up·down, gated: gate·up·down) is below
    1% of their layer's mean (seed §4–6); none at random init."""
    measured = battery_of(model).mlp
    null = null_battery_of(model).mlp
    if not measured:
        pytest.skip(f"model {model.name!r}: not applicable, no MLP up/down pairs")
    finding = Finding(
        model=model.name,
        property="mlp_dead_neurons",
        statistic="share of MLP units with combined norm < 1% of the layer mean",
        value=_fraction(measured, "dead"),
        expected=Expected(0.0, 0.0, CONCENTRATION) if model.random_init else None,
        null=Null(_fraction(null, "dead"), NULL_KIND) if null else None,
        n=sum(m.d_ff for m in measured),
        random_init=model.random_init,
        details={
            "combination": "gate·up·down" if measured[0].gated else "up·down",
            "weak_share": _fraction(measured, "weak"),
            "null_weak_share": _fraction(null, "weak") if null else None,
            "layers": [m.as_dict() for m in measured],
        },
        tracked={
            "weak_share": _fraction(measured, "weak"),
            **{f"{m.stack}.{m.layer} dead_fraction": m.dead_fraction for m in measured},
        },
    )
    plot = ratio_histogram(
        np.concatenate([m.importance / m.importance.mean() for m in measured]),
        np.concatenate([m.importance / m.importance.mean() for m in null]) if null else np.zeros(0),
        lines=(0.01, 0.10),
        xlabel="log10(unit importance / layer mean); red: 1% and 10%",
        title=f"{model.name}: MLP unit importance",
    )
    record_finding(finding, [Evidence("MLP unit importance against the null", plot)])
    check(finding)


def test_mlp_dead_gates(model: LoadedModel, record_finding: Recorder) -> None:
    """Gated MLPs: share of units whose gate row alone is below 1% of the mean gate norm
    (the unit is shut whatever its up and down weights); none at random init."""
    measured = battery_of(model).mlp
    if not any(m.gated for m in measured):
        pytest.skip(f"model {model.name!r}: not applicable, ungated MLP (no mlp_gate role)")
    measured = [m for m in measured if m.gated]
    null = [m for m in null_battery_of(model).mlp if m.gated]
    finding = Finding(
        model=model.name,
        property="mlp_dead_gates",
        statistic="share of gated MLP units with gate norm < 1% of the layer mean",
        value=_fraction(measured, "gate_dead"),
        expected=Expected(0.0, 0.0, CONCENTRATION) if model.random_init else None,
        null=Null(_fraction(null, "gate_dead"), NULL_KIND) if null else None,
        n=sum(m.d_ff for m in measured),
        random_init=model.random_init,
        details={
            "gate_weak_share": _fraction(measured, "gate_weak"),
            "layers": [
                {
                    "stack": m.stack,
                    "layer": m.layer,
                    "gate_dead": m.gate_dead,
                    "gate_weak": m.gate_weak,
                    "gate_norms": m.norms.get("gate"),
                }
                for m in measured
            ],
        },
        tracked={"gate_weak_share": _fraction(measured, "gate_weak")},
    )
    record_finding(finding)
    check(finding)
