"""Cross-layer correlation of the weights that properties/test_crosslayer.py leaves out:
MLP (and every other per-layer 2-D role: cross-attention, linear attention, gates).

The cosine of flattened same-role weights of two layers (crosslayer.cosine_matrix's
definition); independent layers have cosine mean 0 and sd 1/√n (n values per tensor),
asserted at random init (|cos| ≤ 6/√n). The norm gains' cross-layer cosines are the
γ-direction matrices of test_battery_norms.py (null 1, not 1/√n: gains start equal).
"""

from __future__ import annotations

import math

import pytest

from plugins.assertions import check
from plugins.recording import Recorder
from terrain.battery import battery_of, null_battery_of
from terrain.findings import Expected, Finding, Null
from terrain.model import LoadedModel
from terrain.report.evidence import Evidence
from terrain.report.plots import layer_matrices

pytestmark = pytest.mark.weights

ATTENTION = ("q", "k", "v", "o")  # covered by crosslayer_corr
INDEPENDENT_SDS = 6.0


def test_mlp_and_other_weights_are_uncorrelated_across_layers(
    model: LoadedModel, record_finding: Recorder
) -> None:
    """Seed §4 correlates mlp_wi/mlp_wo across layers as well as q/k/v: max |cosine| of
    adjacent-layer weights over every per-layer 2-D role but self-attention q/k/v/o."""
    result = battery_of(model)
    roles = [c for c in result.crosslayer.values() if c.role not in ATTENTION]
    if not roles:
        pytest.skip(f"model {model.name!r}: not applicable, no other role in two or more layers")
    null = [c for c in null_battery_of(model).crosslayer.values() if c.role not in ATTENTION]
    worst = max(roles, key=lambda r: r.max_abs_adjacent)
    n_min = min(r.n for r in roles)
    bound = INDEPENDENT_SDS / math.sqrt(n_min)
    finding = Finding(
        model=model.name,
        property="crosslayer_corr_mlp",
        statistic="max |cos| of adjacent-layer weights, roles other than q/k/v/o",
        value=worst.max_abs_adjacent,
        expected=Expected(None, bound, "independent random-init layers: sd 1/√n")
        if model.random_init
        else None,
        null=Null(max(r.max_abs_adjacent for r in null), "random-init replica of the same config")
        if null
        else Null(max(r.null_sd for r in roles), "analytic sd 1/√n of independent cosines"),
        n=n_min,
        random_init=model.random_init,
        details={
            "worst": f"{worst.stack}.{worst.role}",
            "analytic_null_sd": {f"{r.stack}.{r.role}": r.null_sd for r in roles},
            "roles": [r.as_dict() for r in roles],
            "norm_roles": {
                k: {"adjacent_cosine": [float(x) for x in d.adjacent]}
                for k, d in result.gain_directions.items()
            },
        },
        tracked={f"{r.stack}.{r.role} max_abs_adjacent": r.max_abs_adjacent for r in roles},
    )
    plot = layer_matrices(
        {f"{r.stack}.{r.role}": r.matrix for r in roles}, f"{model.name}: layer × layer cosine"
    )
    record_finding(finding, [Evidence("layer x layer cosine", plot)])
    check(finding)
