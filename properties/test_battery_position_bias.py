"""T5 relative position bias per head (seed notebook §3, §4, §6): monotonicity over the exact
distances, correlation with distance, peak bucket, and a local / global / mixed class.

Rule (terrain/measures/position_bias.py): a head is local when its peak bucket holds a
distance ≤ 2, global when the peak is among the 3 farthest buckets of its direction,
mixed otherwise; in the decoder this is the seed's rule. The seed finds 0 mixed heads in
the decoder of T5-small and T5-v1.1-XXL; a random table is mixed for most heads (a
uniformly random peak: 1 − 6/32 = 0.81 in a 32-bucket decoder). Measured, not asserted.
"""

from __future__ import annotations

import numpy as np
import pytest

from plugins.assertions import check
from plugins.recording import Recorder
from terrain.battery import battery_of, null_battery_of
from terrain.findings import Finding, Null
from terrain.measures.position_bias import PositionBiasTable
from terrain.model import LoadedModel
from terrain.report.battery_plots import position_bias_heatmaps
from terrain.report.evidence import Evidence

pytestmark = pytest.mark.weights

NULL_KIND = "random-init replica of the same config"


def _mixed(tables: list[PositionBiasTable]) -> float:
    return sum(t.count("mixed") for t in tables) / sum(t.n_heads for t in tables)


def _scope(tables: list[PositionBiasTable]) -> tuple[list[PositionBiasTable], str]:
    """The decoder's tables when there are any (the seed's claim), else all."""
    decoder = [t for t in tables if t.stack == "decoder"]
    return (decoder, "decoder") if decoder else (tables, "all stacks")


def test_relative_position_bias_head_classes(model: LoadedModel, record_finding: Recorder) -> None:
    """Share of relative-position-bias heads that are neither local nor global ("mixed"),
    in the decoder when there is one: the seed finds none in T5's decoder; a random table
    is mostly mixed. Every table's counts, monotonicity and distance correlation are
    tracked beside it."""
    tables = battery_of(model).position_bias
    null = null_battery_of(model).position_bias
    if not tables:
        pytest.skip(
            f"model {model.name!r}: not applicable, no relative position bias "
            f"({model.anatomy.family} encodes positions otherwise)"
        )
    tracked: dict[str, float] = {}
    for t in tables:
        key = f"{t.stack}.{t.layer}"
        for kind in ("mixed", "local", "global"):
            tracked[f"{key} {kind}_share"] = t.count(kind) / t.n_heads
        tracked[f"{key} monotonic"] = float(np.nanmean([h.monotonic_fraction for h in t.heads]))
        tracked[f"{key} distance_corr"] = float(
            np.nanmean([h.distance_correlation for h in t.heads])
        )
    scoped, scope = _scope(tables)
    null_scoped, _ = _scope(null)
    finding = Finding(
        model=model.name,
        property="position_bias_mixed_heads",
        statistic=f"share of relative-position-bias heads classed mixed ({scope})",
        value=_mixed(scoped),
        expected=None,
        null=Null(_mixed(null_scoped), NULL_KIND) if null_scoped else None,
        n=sum(t.n_heads for t in scoped),
        random_init=model.random_init,
        details={
            "rule": "local: peak distance ≤ 2; global: peak in the 3 farthest buckets of its "
            "direction; mixed: otherwise",
            "analytic_null_mixed": {f"{t.stack}.{t.layer}": t.null_mixed_fraction for t in tables},
            "tables": [t.as_dict() for t in tables],
            "seed": "seed §6: T5-v1.1-XXL decoder 0 mixed heads; §4 T5-small likewise",
        },
        tracked=tracked,
    )
    plot = position_bias_heatmaps(
        {f"{t.stack}.{t.layer}": t.table for t in tables},
        {f"{t.stack}.{t.layer}": t.table for t in null} if not model.random_init else {},
        f"{model.name}: relative position bias (heads × buckets)",
    )
    record_finding(finding, [Evidence("position bias tables", plot)])
    check(finding)
