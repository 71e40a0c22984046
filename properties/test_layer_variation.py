"""Layer variation after gauge alignment (measured, not asserted), with an honesty check.

For each pair of consecutive layers the relative Frobenius residual ‖W_{l+1} − W_l‖/‖W_l‖
of every role (q, k, v, o, MLP gate/up/down) is measured before and after aligning layer
l+1 to layer l with the exact symmetries the catalogue (terrain.symmetry) derives for the
family (terrain.measures.layer_variation documents which maps each family gets). The value
is the median aligned residual over pairs and roles, beside the same measure on the
random-init replica. The alignment must be a symmetry: the aligned copy of the float64
weights must give the same output (≤1e-10, or ≤1e-5 where the library computes a touched
operation in float32), else the test fails.
"""

from __future__ import annotations

import pytest
import torch

from plugins.assertions import check
from plugins.recording import Recorder
from terrain.errors import TerrainError
from terrain.findings import Finding, Null
from terrain.measures.layer_variation import (
    ROLES,
    LayerVariation,
    measure_layer_variation,
    tolerance,
)
from terrain.model import LoadedModel
from terrain.symmetry import NotCataloguedError, Weights, catalogued_families, describe
from terrain.symmetry.weights import relative_error
from terrain.tracing import forward_inputs, primary_output

DTYPE = "float64"
SEQ_LEN = 8
INPUT_SEED = 0


def _measure(model: LoadedModel) -> tuple[LayerVariation, float, float]:
    """The measure, the output error of the aligned copy, and its tolerance."""
    __tracebackhide__ = True
    family = model.anatomy.family
    if family not in catalogued_families():
        pytest.skip(
            f"model {model.name!r}: not applicable: no symmetry catalogue entry for family "
            f"{family!r}"
        )
    try:
        module = model.module(DTYPE)
    except TerrainError as e:
        pytest.skip(f"model {model.name!r}: not applicable: no module to run: {e}")
    weights = Weights(module)
    config = model.checkpoint.config
    try:
        arch = describe(model.anatomy, config, weights)
    except NotCataloguedError as e:
        pytest.skip(f"model {model.name!r}: not applicable: {e}")
    result = measure_layer_variation(arch, weights)
    if not result.pairs:
        pytest.skip(f"model {model.name!r}: not applicable: fewer than two layers per stack")
    inputs = forward_inputs(
        config, seq_len=SEQ_LEN, seed=INPUT_SEED, device=model.device, dtype=torch.float64
    )
    reference = primary_output(weights.fresh().forward(inputs))
    error = relative_error(primary_output(result.aligned.forward(inputs)), reference)
    return result, error, tolerance(arch, result.symmetries_used, weights.dtype)


def test_layer_variation_after_gauge_alignment(
    model: LoadedModel, record_finding: Recorder
) -> None:
    # memo: a random-init model is its own null, measured once.
    result, error, tol = model.memo("layer_variation", lambda: _measure(model))
    null_model = model.null()
    null_result, null_error, null_tol = null_model.memo(
        "layer_variation", lambda: _measure(null_model)
    )
    for name, err, t in ((model.name, error, tol), (null_model.name, null_error, null_tol)):
        if not err <= t:
            pytest.fail(
                f"model {name!r}, property 'layer_variation': the gauge alignment changed the "
                f"output by {err:.3g} > {t:g}: an applied map is not a symmetry",
                pytrace=False,
            )
    roles = [r for r in ROLES if result.values("after", r)]
    tracked = {"median_before": result.median("before")}
    tracked |= {f"median_after_{r}": result.median("after", r) for r in roles}
    finding = Finding(
        model=model.name,
        property="layer_variation",
        statistic="median over consecutive layer pairs and roles of ‖W_{l+1} − W_l‖/‖W_l‖ "
        "after gauge alignment",
        value=result.median("after"),
        expected=None,
        null=Null(null_result.median("after"), "random-init replica, same measure"),
        n=len(result.values("after")),
        random_init=model.random_init,
        details={
            "pairs": [p.as_dict() for p in result.pairs],
            "null_pairs": [p.as_dict() for p in null_result.pairs],
            "median_before": result.median("before"),
            "null_median_before": null_result.median("before"),
            "symmetries_used": sorted(result.symmetries_used),
            "alignment_output_error": error,
            "null_alignment_output_error": null_error,
            "tolerance": tol,
            "dtype": DTYPE,
            "seq_len": SEQ_LEN,
            "input_seed": INPUT_SEED,
        },
        tracked=tracked,
    )
    record_finding(finding)
    check(finding)
