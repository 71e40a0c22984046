"""Dead MLP units, norm gains and T5 position-bias heads: per-unit structure of the weights.

Dead units (seed notebook §4–6): hidden units whose combined weight norm (up·down, gated:
gate·up·down) is below 1% of the layer's mean. At random init each per-unit norm is a chi
variable concentrated at its mean, so a null has no dead unit (asserted at random init:
probability far below 1e-30 per unit at width ≥ 32).

Norm gains (seed §4, research note 003): every family here initialises its gains to a
constant (Qwen3.5 stores 1 + w with w = 0, read as the effective gain), so at init the
spread is 0 and all layers share one direction: whatever a trained model shows is learned.

Position bias (seed §3, §4, §6): a head is local when its peak bucket holds a distance
≤ 2, global when the peak is among the 3 farthest buckets of its direction, mixed
otherwise. The seed finds 0 mixed heads in T5's decoder; a random table is mostly mixed.
"""

from __future__ import annotations

from collections import defaultdict
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from terrain.checks import kit
from terrain.measures.mlp import MLPLayer
from terrain.measures.norms import GainStats
from terrain.measures.position_bias import PositionBiasTable
from terrain.report.battery_plots import (
    cosine_matrices,
    layer_curves,
    position_bias_heatmaps,
    ratio_histogram,
)

if TYPE_CHECKING:
    from terrain.model import LoadedModel

CONCENTRATION = "chi concentration of random-init row norms: no unit below 1% of the mean"


def _fraction(layers: list[MLPLayer], attr: str) -> float:
    return float(sum(getattr(m, attr) for m in layers)) / sum(m.d_ff for m in layers)


def dead_neurons(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    measured = model.battery().mlp
    if not measured:
        raise kit.NotApplicableError(f"model {model.name!r} has no MLP up/down pairs")
    null = model.null_batteries()[0].mlp
    default = kit.Expected(0.0, 0.0, CONCENTRATION) if model.random_init else None
    finding = kit.finding(
        model,
        "mlp_dead_neurons",
        value=_fraction(measured, "dead"),
        expected=kit.band(expect, default),
        null=kit.null_of(model, lambda b: _fraction(b.mlp, "dead") if b.mlp else None),
        n=sum(m.d_ff for m in measured),
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
    plot = partial(
        ratio_histogram,
        np.concatenate([m.importance / m.importance.mean() for m in measured]),
        np.concatenate([m.importance / m.importance.mean() for m in null]) if null else np.zeros(0),
        lines=(0.01, 0.10),
        xlabel="log10(unit importance / layer mean); red: 1% and 10%",
        title=f"{model.name}: MLP unit importance",
    )
    return kit.Evaluation(finding, (kit.Evidence("MLP unit importance against the null", plot),))


def _gated(layers: list[MLPLayer]) -> list[MLPLayer]:
    return [m for m in layers if m.gated]


def dead_gates(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    measured = _gated(model.battery().mlp)
    if not measured:
        raise kit.NotApplicableError(f"model {model.name!r}: ungated MLP (no mlp_gate role)")
    default = kit.Expected(0.0, 0.0, CONCENTRATION) if model.random_init else None
    finding = kit.finding(
        model,
        "mlp_dead_gates",
        value=_fraction(measured, "gate_dead"),
        expected=kit.band(expect, default),
        null=kit.null_of(
            model, lambda b: _fraction(_gated(b.mlp), "gate_dead") if _gated(b.mlp) else None
        ),
        n=sum(m.d_ff for m in measured),
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
    return kit.Evaluation(finding)


def _per_layer(gains: list[GainStats]) -> dict[str, list[GainStats]]:
    out: dict[str, list[GainStats]] = defaultdict(list)
    for g in gains:
        if g.layer is not None:
            out[f"{g.stack}.{g.role}"].append(g)
    return out


def gain_spread(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    gains = model.battery().gains
    if not gains:
        raise kit.NotApplicableError(f"model {model.name!r} has no norm gains")
    by_role = _per_layer(gains)
    null_by_role = _per_layer(model.null_batteries()[0].gains)
    finding = kit.finding(
        model,
        "norm_gain_spread",
        value=float(np.mean([g.std for g in gains])),
        expected=kit.band(expect),
        null=kit.null_of(
            model, lambda b: float(np.mean([g.std for g in b.gains])) if b.gains else None
        ),
        n=len(gains),
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
    evidence: tuple[kit.Evidence, ...] = ()
    if by_role:
        plot = partial(
            layer_curves,
            {k: ([g.layer or 0 for g in v], [g.mean for g in v]) for k, v in by_role.items()},
            {k: ([g.layer or 0 for g in v], [g.mean for g in v]) for k, v in null_by_role.items()},
            ylabel="mean γ (bars of the spread in details)",
            title=f"{model.name}: norm gain mean per layer",
            reference=1.0,
        )
        evidence = (kit.Evidence("norm gain mean per layer against the null", plot),)
    return kit.Evaluation(finding, evidence)


def gain_directions(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    directions = model.battery().gain_directions
    if not directions:
        raise kit.NotApplicableError(f"model {model.name!r} has no norm role in two or more layers")
    null = model.null_batteries()[0].gain_directions

    def statistic(b: kit.BatteryResult) -> float | None:
        ds = b.gain_directions
        return float(np.mean([d.mean_adjacent for d in ds.values()])) if ds else None

    finding = kit.finding(
        model,
        "norm_gain_directions",
        value=float(np.mean([d.mean_adjacent for d in directions.values()])),
        expected=kit.band(expect),
        null=kit.null_of(model, statistic),
        n=sum(len(d.layers) for d in directions.values()),
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
    plot = partial(
        cosine_matrices,
        {k: d.cosine for k, d in directions.items()},
        f"{model.name}: cosine of unit gain directions across layers (null: 1 everywhere)",
    )
    return kit.Evaluation(finding, (kit.Evidence("γ-direction cosine matrices", plot),))


def _mixed(tables: list[PositionBiasTable]) -> float:
    return sum(t.count("mixed") for t in tables) / sum(t.n_heads for t in tables)


def _scope(tables: list[PositionBiasTable]) -> tuple[list[PositionBiasTable], str]:
    """The decoder's tables when there are any (the seed's claim), else all."""
    decoder = [t for t in tables if t.stack == "decoder"]
    return (decoder, "decoder") if decoder else (tables, "all stacks")


def mixed_heads(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    tables = model.battery().position_bias
    if not tables:
        raise kit.NotApplicableError(
            f"model {model.name!r} has no relative position bias "
            f"({model.anatomy.family} encodes positions otherwise)"
        )
    null = model.null_batteries()[0].position_bias
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
    finding = kit.finding(
        model,
        "position_bias_mixed_heads",
        statistic=f"share of relative-position-bias heads classed mixed ({scope})",
        value=_mixed(scoped),
        expected=kit.band(expect),
        null=kit.null_of(
            model, lambda b: _mixed(_scope(b.position_bias)[0]) if b.position_bias else None
        ),
        n=sum(t.n_heads for t in scoped),
        details={
            "rule": "local: peak distance ≤ 2; global: peak in the 3 farthest buckets of its "
            "direction; mixed: otherwise",
            "analytic_null_mixed": {f"{t.stack}.{t.layer}": t.null_mixed_fraction for t in tables},
            "tables": [t.as_dict() for t in tables],
            "seed": "seed §6: T5-v1.1-XXL decoder 0 mixed heads; §4 T5-small likewise",
        },
        tracked=tracked,
    )
    plot = partial(
        position_bias_heatmaps,
        {f"{t.stack}.{t.layer}": t.table for t in tables},
        {f"{t.stack}.{t.layer}": t.table for t in null} if not model.random_init else {},
        f"{model.name}: relative position bias (heads × buckets)",
    )
    return kit.Evaluation(finding, (kit.Evidence("position bias tables", plot),))


UNIT_GAUGE = (
    "MLP unit scalings (ReLU: c > 0 in, 1/c out; gated: the linear branch) move each unit's "
    "input and output norms oppositely; their product, the combined importance, is unchanged"
)
GAIN_GAUGE = (
    "a residual rotation folds the gains into their readers: after it every gain is 1, so "
    "gain statistics describe the parametrisation of RMSNorm models"
)
# Shares of MLP units that a trained model has shut, and a random init has not.
MLP_UNITS = kit.Theme(
    source="seed notebook §4–6",
    tolerance=kit.Tolerance(abs=0.005),
    gauge=kit.Gauge.INVARIANT,
    gauge_note=UNIT_GAUGE + "; a unit permutation only reorders them",
    kind="weights",
)
MLP_UNITS.declare(
    "mlp_dead_neurons",
    "share of MLP units with combined norm < 1% of the layer mean",
    "share of MLP hidden units whose combined norm (up·down, gated: gate·up·down) "
    "is below 1% of their layer's mean; none at random init",
    dead_neurons,
    kit.FRACTION,
)
MLP_UNITS.declare(
    "mlp_dead_gates",
    "share of gated MLP units with gate norm < 1% of the layer mean",
    "gated MLPs: share of units whose gate row alone is below 1% of the mean gate "
    "norm (the unit is shut whatever its up and down weights); none at random init",
    dead_gates,
    kit.FRACTION,
    source="seed notebook §6 (T5 v1.1 gated units)",
    gauge_note="the gated scaling symmetry acts on the linear branch only; the gate's "
    "rows are moved only by unit permutations, which reorder them",
)
GAINS = kit.Theme(
    source="seed notebook §4 (LayerNorm learned scales)",
    tolerance=kit.Tolerance(abs=0.01),
    gauge=kit.Gauge.DEPENDENT,
    gauge_note=GAIN_GAUGE,
    kind="weights",
)
GAINS.declare(
    "norm_gain_spread",
    "mean over norm gains of std(γ)",
    "per-layer statistics of every norm gain (mean, std, counts above 1.5, below "
    "0.5 and near 1); the headline is the mean spread std(γ), 0 at init",
    gain_spread,
    kit.NONNEGATIVE,
)
GAINS.declare(
    "norm_gain_directions",
    "mean adjacent-layer cosine of unit gain directions γ̂",
    "the layer × layer cosine of the unit gain directions γ̂_L tells whether the "
    "layers share one preferred axis (cosine near 1) or each has its own; 1 at init",
    gain_directions,
    kit.COSINE,
    source="research note 003 (γ-direction analysis)",
)
kit.declare(
    kit.Property(
        name="position_bias_mixed_heads",
        statistic="share of relative-position-bias heads classed mixed (decoder when present)",
        claim="share of relative-position-bias heads that are neither local nor global: the "
        "seed finds none in T5's decoder; a random table is mostly mixed",
        source="seed notebook §3, §4, §6",
        version=1,
        tolerance=kit.Tolerance(abs=0.05),
        domain=kit.FRACTION,
        gauge=kit.Gauge.INVARIANT,
        gauge_note="the bias table is added to the scores outside every weight symmetry",
        kind="weights",
        evaluate=mixed_heads,
    )
)
