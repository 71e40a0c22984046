"""Q-projection sparsity (seed notebook §4: T5-small Q 93.7% of |w| < 0.1, K 19.2%, V 12.1%)."""

from __future__ import annotations

import pytest

from plugins.assertions import check
from plugins.recording import Recorder
from terrain.findings import Expected, Finding, Null
from terrain.measures.sparsity import ATTENTION_ROLES, RELATIVE_SCALE, projection_sparsity
from terrain.model import LoadedModel
from terrain.report.evidence import Evidence
from terrain.report.plots import threshold_bars

pytestmark = pytest.mark.weights

NULL_KIND = "random-init replica of the same config"


def test_q_projection_is_sparse(model: LoadedModel, record_finding: Recorder) -> None:
    expect = model.spec.expect.q_sparsity
    threshold = expect.threshold if expect else 0.1
    measured = projection_sparsity(model.anatomy, ATTENTION_ROLES)
    null = projection_sparsity(model.null().anatomy, ATTENTION_ROLES)
    q = measured["q"]
    finding = Finding(
        model=model.name,
        property="q_sparsity",
        statistic=f"fraction of |W_Q| < {threshold:g}",
        value=q.below[threshold],
        expected=Expected(expect.band.low, expect.band.high, expect.source) if expect else None,
        null=Null(null["q"].below[threshold], NULL_KIND),
        n=q.n_values,
        random_init=model.random_init,
        details={
            "roles": {r: s.as_dict() for r, s in measured.items()},
            "null_roles": {r: s.as_dict() for r, s in null.items()},
        },
    )
    roles = list(measured)
    plot = threshold_bars(
        roles,
        {r: measured[r].below for r in roles},
        {r: null[r].below for r in null},
        f"{model.name}: attention weight sparsity",
    )
    record_finding(finding, [Evidence("sparsity by role", plot)])
    check(finding)


def test_q_sparsity_is_not_only_weight_scale(model: LoadedModel, record_finding: Recorder) -> None:
    """Scale-free companion: fraction of |w| below 0.1·std (Gaussian: 0.080), unmoved by scaling."""
    expect = model.spec.expect.q_sparsity
    band = expect.scale_free_band if expect else None
    q = projection_sparsity(model.anatomy, ("q",))["q"]
    null_q = projection_sparsity(model.null().anatomy, ("q",))["q"]
    finding = Finding(
        model=model.name,
        property="q_sparsity_scale_free",
        statistic=f"fraction of |W_Q| < {RELATIVE_SCALE:g}·std",
        value=q.scale_free,
        expected=Expected(band.low, band.high, expect.source if expect else None) if band else None,
        null=Null(null_q.scale_free, NULL_KIND),
        n=q.n_values,
        random_init=model.random_init,
        details={
            "excess_kurtosis": q.excess_kurtosis,
            "null_excess_kurtosis": null_q.excess_kurtosis,
        },
    )
    record_finding(finding)
    check(finding)
