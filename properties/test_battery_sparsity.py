"""Sparsity of every 2-D weight role at four thresholds, with its scale-free companion.

Seed notebook §4–6 report the share of |w| below 1e-4, 1e-3, 1e-2 and 1e-1 per weight type
(T5-small Q 93.7% below 0.1, K 19.2%, V 12.1%; T5-v1.1-XXL Q 100%). A fixed threshold
mostly measures the weight scale (a random-init replica of T5 already has its Q entirely
below 0.1), so every value stands beside the replica's and beside the scale-free share of
|w| below 0.1·std (0.080 for a Gaussian). Measured, not asserted.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from plugins.assertions import check
from plugins.recording import Recorder
from terrain.battery import THRESHOLDS, battery_of, null_battery_of
from terrain.findings import Finding, Null
from terrain.measures.sparsity import RELATIVE_SCALE, RoleSparsity
from terrain.model import LoadedModel
from terrain.report.evidence import Evidence
from terrain.report.plots import threshold_bars

pytestmark = pytest.mark.weights

NULL_KIND = "random-init replica of the same config"
HEADLINE = 1e-2


def _pooled(roles: dict[str, RoleSparsity], share: Callable[[RoleSparsity], float]) -> float:
    """A per-role share pooled over all the roles' values."""
    n = sum(s.n_values for s in roles.values())
    return sum(share(s) * s.n_values for s in roles.values()) / n


def _pooled_below(roles: dict[str, RoleSparsity], threshold: float) -> float:
    return _pooled(roles, lambda s: s.below[threshold])


def _measured_and_null(
    model: LoadedModel,
) -> tuple[dict[str, RoleSparsity], dict[str, RoleSparsity]]:
    """The model's per-role sparsity and its replica's; skipped when there are no 2-D weights."""
    measured = battery_of(model).sparsity
    if not measured:
        pytest.skip(f"model {model.name!r}: not applicable, no 2-D weights")
    return measured, null_battery_of(model).sparsity


def test_weight_sparsity_by_role(model: LoadedModel, record_finding: Recorder) -> None:
    """Share of |w| below 1e-4, 1e-3, 1e-2 and 1e-1 in every 2-D weight role (seed §4–6),
    each beside the random-init replica: a weight-scale effect first, so measured only."""
    measured, null = _measured_and_null(model)
    finding = Finding(
        model=model.name,
        property="weight_sparsity",
        statistic=f"share of all 2-D weights with |w| < {HEADLINE:g}",
        value=_pooled_below(measured, HEADLINE),
        expected=None,
        null=Null(_pooled_below(null, HEADLINE), NULL_KIND),
        n=sum(s.n_values for s in measured.values()),
        random_init=model.random_init,
        details={
            "thresholds": list(THRESHOLDS),
            "roles": {label: s.as_dict() for label, s in measured.items()},
            "null_roles": {label: s.as_dict() for label, s in null.items()},
            "pooled": {f"{t:g}": _pooled_below(measured, t) for t in THRESHOLDS},
            "null_pooled": {f"{t:g}": _pooled_below(null, t) for t in THRESHOLDS},
        },
        tracked={
            f"{label} <{t:g}": frac for label, s in measured.items() for t, frac in s.below.items()
        },
    )
    labels = list(measured)
    plot = threshold_bars(
        labels,
        {r: measured[r].below for r in labels},
        {r: null[r].below for r in null},
        f"{model.name}: share of |w| below each threshold, by role",
    )
    record_finding(finding, [Evidence("sparsity by role against the random-init null", plot)])
    check(finding)


def test_weight_sparsity_scale_free(model: LoadedModel, record_finding: Recorder) -> None:
    """Scale-free companion: share of |w| below 0.1·std of its own tensor (Gaussian 0.080)
    and the excess kurtosis (Gaussian 0), per 2-D role; scaling a tensor moves neither."""
    measured, null = _measured_and_null(model)
    finding = Finding(
        model=model.name,
        property="weight_sparsity_scale_free",
        statistic=f"share of all 2-D weights with |w| < {RELATIVE_SCALE:g}·std of their tensor",
        value=_pooled(measured, lambda s: s.scale_free),
        expected=None,
        null=Null(_pooled(null, lambda s: s.scale_free), NULL_KIND),
        n=sum(s.n_values for s in measured.values()),
        random_init=model.random_init,
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
    record_finding(finding)
    check(finding)
