"""Learned norm gains γ (seed notebook §4 "LayerNorm learned scales"; research note 003,
"γ-direction" analysis), each beside the random-init replica.

Every family here initialises its gains to a constant (ones; Qwen3.5 stores 1 + w with
w = 0, read as the effective gain), so at init the spread is 0 and all layers share one
direction: whatever the trained model shows is learned. Measured, not asserted.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from plugins.assertions import check
from plugins.recording import Recorder
from terrain.battery import battery_of, null_battery_of
from terrain.findings import Finding, Null
from terrain.measures.norms import GainStats
from terrain.model import LoadedModel
from terrain.report.battery_plots import cosine_matrices, layer_curves
from terrain.report.evidence import Evidence

pytestmark = pytest.mark.weights

NULL_KIND = "random-init replica of the same config"


def _per_layer(gains: list[GainStats]) -> dict[str, list[GainStats]]:
    out: dict[str, list[GainStats]] = defaultdict(list)
    for g in gains:
        if g.layer is not None:
            out[f"{g.stack}.{g.role}"].append(g)
    return out


def test_norm_gain_statistics(model: LoadedModel, record_finding: Recorder) -> None:
    """Per-layer statistics of every norm gain (seed §4: mean, std, counts above 1.5, below
    0.5 and near 1); the headline is the mean spread std(γ), 0 at init."""
    gains = battery_of(model).gains
    null = null_battery_of(model).gains
    if not gains:
        pytest.skip(f"model {model.name!r}: not applicable, no norm gains")
    by_role = _per_layer(gains)
    null_by_role = _per_layer(null)
    finding = Finding(
        model=model.name,
        property="norm_gain_spread",
        statistic="mean over norm gains of std(γ)",
        value=float(np.mean([g.std for g in gains])),
        expected=None,
        null=Null(float(np.mean([g.std for g in null])), NULL_KIND) if null else None,
        n=len(gains),
        random_init=model.random_init,
        details={
            "gains": [g.as_dict() for g in gains],
            "null_mean_std": {
                k: float(np.mean([g.std for g in v])) for k, v in null_by_role.items()
            },
        },
        tracked={
            **{f"{k} mean": float(np.mean([g.mean for g in v])) for k, v in by_role.items()},
            **{f"{k} std": float(np.mean([g.std for g in v])) for k, v in by_role.items()},
            **{
                f"{k} high_share": sum(g.high for g in v) / sum(g.size for g in v)
                for k, v in by_role.items()
            },
            **{
                f"{k} low_share": sum(g.low for g in v) / sum(g.size for g in v)
                for k, v in by_role.items()
            },
        },
    )
    evidence = []
    if by_role:
        plot = layer_curves(
            {k: ([g.layer or 0 for g in v], [g.mean for g in v]) for k, v in by_role.items()},
            {k: ([g.layer or 0 for g in v], [g.mean for g in v]) for k, v in null_by_role.items()},
            ylabel="mean γ (bars of the spread in details)",
            title=f"{model.name}: norm gain mean per layer",
            reference=1.0,
        )
        evidence.append(Evidence("norm gain mean per layer against the null", plot))
    record_finding(finding, evidence)
    check(finding)


def test_norm_gain_directions(model: LoadedModel, record_finding: Recorder) -> None:
    """Research note 003: γ_L = ‖γ_L‖·γ̂_L; the layer × layer cosine of the unit directions
    γ̂_L and a PCA of them tell whether the layers share one preferred axis (cosine near 1,
    one component) or each has its own. At init all directions coincide (cosine 1)."""
    directions = battery_of(model).gain_directions
    null = null_battery_of(model).gain_directions
    if not directions:
        pytest.skip(f"model {model.name!r}: not applicable, no norm role in two or more layers")
    finding = Finding(
        model=model.name,
        property="norm_gain_directions",
        statistic="mean adjacent-layer cosine of unit gain directions γ̂",
        value=float(np.mean([d.mean_adjacent for d in directions.values()])),
        expected=None,
        null=Null(float(np.mean([d.mean_adjacent for d in null.values()])), NULL_KIND)
        if null
        else None,
        n=sum(len(d.layers) for d in directions.values()),
        random_init=model.random_init,
        details={
            "roles": {k: d.as_dict() for k, d in directions.items()},
            "null_roles": {
                k: {"mean_adjacent_cosine": d.mean_adjacent, "top1_explained": d.top1_explained}
                for k, d in null.items()
            },
        },
        tracked={
            **{f"{k} mean_adjacent": d.mean_adjacent for k, d in directions.items()},
            **{
                f"{k} top1_explained": float(d.top1_explained)
                for k, d in directions.items()
                if d.top1_explained is not None
            },
        },
    )
    plot = cosine_matrices(
        {k: d.cosine for k, d in directions.items()},
        f"{model.name}: cosine of unit gain directions across layers (null: 1 everywhere)",
    )
    record_finding(finding, [Evidence("γ-direction cosine matrices", plot)])
    check(finding)
