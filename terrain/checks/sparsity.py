"""Weight sparsity: the share of |w| below fixed thresholds, and its scale-free companions.

Seed notebook §4–6 report the share of |w| below 1e-4 … 1e-1 per weight type (T5-small Q
93.7% below 0.1, K 19.2%, V 12.1%; T5-v1.1-XXL Q 100%). A fixed threshold mostly measures
the weight scale (a random-init replica of T5 already has its Q entirely below 0.1), so
every value stands beside the random-init null and beside the scale-free share of |w|
below 0.1·std of its own tensor (0.080 for a Gaussian). Sparsity is gauge-dependent: the
Q/K gauge W_Q → A·W_Q changes every entry while the model computes the same function.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from pydantic import field_validator

from terrain.battery import THRESHOLDS
from terrain.checks import kit
from terrain.measures.sparsity import RELATIVE_SCALE, RoleSparsity, merge
from terrain.property import Band
from terrain.report.plots import threshold_bars

if TYPE_CHECKING:
    from terrain.model import LoadedModel

ATTENTION_ROLES = ("q", "k", "v", "o")
HEADLINE = 1e-2
GAUGE_NOTE = (
    "raw weights move under the exact Q/K and V/O gauges and MLP unit scalings (the "
    "function does not): the share describes the parametrisation; the QK forms' spectra "
    "(qk_positive_mass) are the gauge-invariant counterpart"
)


def pooled(result: kit.BatteryResult, role: str) -> RoleSparsity | None:
    """A role's sparsity pooled over every stack (exactly: from per-tensor tallies)."""
    counts = [
        c
        for label, cs in sorted(result.sparsity_counts.items())
        if label.endswith(f".{role}")
        for c in cs
    ]
    return merge(role, counts) if counts else None


def _pooled_share(roles: dict[str, RoleSparsity], share: Callable[[RoleSparsity], float]) -> float:
    """A per-role share pooled over all the roles' values."""
    n = sum(s.n_values for s in roles.values())
    return sum(share(s) * s.n_values for s in roles.values()) / n


def _below(roles: dict[str, RoleSparsity], threshold: float) -> float:
    return _pooled_share(roles, lambda s: s.below[threshold])


class QSparsityExpect(kit.Expectation):
    """Share of |W_Q| below `threshold` (one of the battery's four thresholds)."""

    threshold: float = 0.1

    @field_validator("threshold")
    @classmethod
    def _measured_threshold(cls, value: float) -> float:
        if value not in THRESHOLDS:
            raise ValueError(f"threshold must be one of {list(THRESHOLDS)}, got {value}")
        return value


def _q(model: LoadedModel) -> RoleSparsity:
    q = pooled(model.battery(), "q")
    if q is None:
        raise kit.NotApplicableError(f"model {model.name!r} has no attention q projections")
    return q


def q_sparsity(model: LoadedModel, expect: QSparsityExpect | None) -> kit.Evaluation:
    threshold = expect.threshold if expect else 0.1
    result = model.battery()
    q = _q(model)
    roles = {r: s for r in ATTENTION_ROLES if (s := pooled(result, r)) is not None}
    null_roles = {
        r: s for r in ATTENTION_ROLES if (s := pooled(model.null_batteries()[0], r)) is not None
    }

    def statistic(b: kit.BatteryResult) -> float | None:
        s = pooled(b, "q")
        return None if s is None else s.below[threshold]

    finding = kit.finding(
        model,
        "q_sparsity",
        statistic=f"fraction of |W_Q| < {threshold:g}",
        value=q.below[threshold],
        expected=kit.band(expect),
        null=kit.null_of(model, statistic),
        n=q.n_values,
        details={
            "roles": {r: s.as_dict() for r, s in roles.items()},
            "null_roles": {r: s.as_dict() for r, s in null_roles.items()},
        },
    )
    plot = partial(
        threshold_bars,
        list(roles),
        {r: s.below for r, s in roles.items()},
        {r: s.below for r, s in null_roles.items()},
        f"{model.name}: attention weight sparsity",
    )
    return kit.Evaluation(finding, (kit.Evidence("sparsity by role", plot),))


def q_sparsity_scale_free(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    q = _q(model)
    null_q = pooled(model.null_batteries()[0], "q")

    def statistic(b: kit.BatteryResult) -> float | None:
        s = pooled(b, "q")
        return None if s is None else s.scale_free

    finding = kit.finding(
        model,
        "q_sparsity_scale_free",
        statistic=f"fraction of |W_Q| < {RELATIVE_SCALE:g}·std",
        value=q.scale_free,
        expected=kit.band(expect),
        null=kit.null_of(model, statistic),
        n=q.n_values,
        details={
            "excess_kurtosis": q.excess_kurtosis,
            "null_excess_kurtosis": null_q.excess_kurtosis if null_q else None,
        },
    )
    return kit.Evaluation(finding)


def _roles(model: LoadedModel) -> dict[str, RoleSparsity]:
    measured = model.battery().sparsity
    if not measured:
        raise kit.NotApplicableError(f"model {model.name!r} has no 2-D weights")
    return measured


def weight_sparsity(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    measured = _roles(model)
    null = model.null_batteries()[0].sparsity
    finding = kit.finding(
        model,
        "weight_sparsity",
        statistic=f"share of all 2-D weights with |w| < {HEADLINE:g}",
        value=_below(measured, HEADLINE),
        expected=kit.band(expect),
        null=kit.null_of(model, lambda b: _below(b.sparsity, HEADLINE) if b.sparsity else None),
        n=sum(s.n_values for s in measured.values()),
        details={
            "thresholds": list(THRESHOLDS),
            "roles": {label: s.as_dict() for label, s in measured.items()},
            "null_roles": {label: s.as_dict() for label, s in null.items()},
            "pooled": {f"{t:g}": _below(measured, t) for t in THRESHOLDS},
            "null_pooled": {f"{t:g}": _below(null, t) for t in THRESHOLDS} if null else {},
        },
        tracked={
            f"{label} <{t:g}": frac for label, s in measured.items() for t, frac in s.below.items()
        },
    )
    labels = list(measured)
    plot = partial(
        threshold_bars,
        labels,
        {r: measured[r].below for r in labels},
        {r: null[r].below for r in null},
        f"{model.name}: share of |w| below each threshold, by role",
    )
    return kit.Evaluation(
        finding, (kit.Evidence("sparsity by role against the random-init null", plot),)
    )


def weight_sparsity_scale_free(
    model: LoadedModel, expect: kit.Expectation | None
) -> kit.Evaluation:
    measured = _roles(model)
    null = model.null_batteries()[0].sparsity
    finding = kit.finding(
        model,
        "weight_sparsity_scale_free",
        statistic=f"share of all 2-D weights with |w| < {RELATIVE_SCALE:g}·std of their tensor",
        value=_pooled_share(measured, lambda s: s.scale_free),
        expected=kit.band(expect),
        null=kit.null_of(
            model,
            lambda b: _pooled_share(b.sparsity, lambda s: s.scale_free) if b.sparsity else None,
        ),
        n=sum(s.n_values for s in measured.values()),
        details={
            "roles": {
                label: {"scale_free": s.scale_free, "excess_kurtosis": s.excess_kurtosis}
                for label, s in measured.items()
            },
            "null_roles": {
                label: {"scale_free": s.scale_free, "excess_kurtosis": s.excess_kurtosis}
                for label, s in null.items()
            },
            "gaussian_scale_free": 0.0797,
        },
        tracked={
            **{f"{label} scale_free": s.scale_free for label, s in measured.items()},
            **{f"{label} kurtosis": s.excess_kurtosis for label, s in measured.items()},
        },
    )
    return kit.Evaluation(finding)


SEED_Q = "seed notebook §4: T5-small Q 93.7% of |w| < 0.1 (K 19.2%, V 12.1%)"
SPARSITY = kit.Theme(
    source="seed notebook §4–6 (per weight type)",
    tolerance=kit.Tolerance(abs=0.01),
    gauge=kit.Gauge.DEPENDENT,
    gauge_note=GAUGE_NOTE,
    kind="weights",
)
SCALE_FREE_TOLERANCE = kit.Tolerance(abs=0.005)
Q_SPARSITY = SPARSITY.declare(
    "q_sparsity",
    "fraction of |W_Q| below a threshold (0.1 by default)",
    "the Q projections are sparse: most |w| lie below the threshold",
    q_sparsity,
    kit.FRACTION,
    QSparsityExpect,
    source=SEED_Q,
)
Q_SPARSITY_SCALE_FREE = SPARSITY.declare(
    "q_sparsity_scale_free",
    f"fraction of |W_Q| below {RELATIVE_SCALE:g}·std (Gaussian: 0.080)",
    "Q sparsity is not only weight scale: scaling a tensor cannot move this share",
    q_sparsity_scale_free,
    kit.FRACTION,
    source=f"companion of q_sparsity ({SEED_Q})",
    tolerance=SCALE_FREE_TOLERANCE,
)
WEIGHT_SPARSITY = SPARSITY.declare(
    "weight_sparsity",
    f"share of all 2-D weights with |w| < {HEADLINE:g} (1e-4 … 1e-1 per role)",
    "share of |w| below 1e-4, 1e-3, 1e-2 and 1e-1 in every 2-D weight role",
    weight_sparsity,
    kit.FRACTION,
)
WEIGHT_SPARSITY_SCALE_FREE = SPARSITY.declare(
    "weight_sparsity_scale_free",
    f"share of 2-D weights with |w| < {RELATIVE_SCALE:g}·std of their tensor",
    "scale-free sparsity and excess kurtosis of every 2-D weight role",
    weight_sparsity_scale_free,
    kit.FRACTION,
    source="companion of weight_sparsity",
    tolerance=SCALE_FREE_TOLERANCE,
)

__all__ = ["Band", "QSparsityExpect", "pooled"]
