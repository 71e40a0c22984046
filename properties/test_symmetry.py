"""Exact weight symmetries: the output is unchanged, and each negative control changes it.

For every model, each symmetry of the family's catalogue (terrain.symmetry) is applied to
a copy of the float64 weights with seeded random group elements, and the module's primary
output on fixed seeded inputs is compared with the original: the largest relative error
over the draws must be within the tolerance (1e-10, or 1e-5 where the library computes the
touched operation in float32). Each negative control (the same kind of map where it is
not a symmetry) must change the output by O(1): at least CONTROL_FLOOR (1e-2), scaled down
by the output's dependence on the touched tensors where zeroing them changes it by less
than 1 (tiny random inits; terrain.symmetry.measure), unless these weights make it a
symmetry too (recorded, e.g. all norm gains equal at initialisation). The control's error
is the finding's null. A symmetry that does not apply to the family is
skipped with the catalogue's reason.
"""

from __future__ import annotations

import pytest
import torch

from plugins.assertions import check
from plugins.recording import Recorder
from terrain.errors import TerrainError
from terrain.findings import Expected, Finding, Null
from terrain.model import LoadedModel
from terrain.symmetry import (
    CONTROL_FLOOR,
    NotApplicable,
    NotCataloguedError,
    Weights,
    catalogue,
    catalogued_families,
    measure,
)
from terrain.tracing import forward_inputs

DTYPE = "float64"
SEQ_LEN = 8  # tokens per input row (two rows, the second partly padding)
INPUT_SEED = 0
DRAWS = (0, 1, 2)  # seeds of the group elements
CONTROL_DRAWS = (0,)  # seeds of the controls' maps: one failure of O(1) is the evidence


def _measure_symmetry(model: LoadedModel, record_finding: Recorder, name: str) -> None:
    __tracebackhide__ = True
    config = model.checkpoint.config
    if model.anatomy.family not in catalogued_families():
        pytest.skip(
            f"model {model.name!r}: not catalogued: no symmetry catalogue entry for family "
            f"{model.anatomy.family!r} (catalogued: {', '.join(catalogued_families())})"
        )
    try:
        module = model.module(DTYPE)
    except TerrainError as e:
        pytest.skip(f"model {model.name!r}: not applicable, no module to run: {e}")
    weights = Weights(module)
    try:
        entries = catalogue(model.anatomy, config, weights)
    except NotCataloguedError as e:
        pytest.skip(f"model {model.name!r}: {e}")
    entry = entries[name]
    if isinstance(entry, NotApplicable):
        pytest.skip(f"model {model.name!r}: {name} not applicable: {entry.reason}")
    inputs = forward_inputs(
        config, seq_len=SEQ_LEN, seed=INPUT_SEED, device=model.device, dtype=torch.float64
    )
    result = measure(weights, entry, inputs, DRAWS, control_seeds=CONTROL_DRAWS)
    measured = result.measured_controls
    finding = Finding(
        model=model.name,
        property=name,
        statistic="max relative change of the output over seeded group elements",
        value=result.max_error,
        expected=Expected(
            None,
            result.tolerance,
            f"exact symmetry ({entry.derivation})"
            + (f"; float32 precision: {entry.float32_reason}" if entry.float32_reason else ""),
        ),
        null=Null(
            result.min_control_error,
            "negative control, min relative change: " + ", ".join(c.name for c in measured),
        ),
        n=len(DRAWS),
        seed=DRAWS[0],
        random_init=model.random_init,
        details={
            **result.as_dict(),
            "dtype": DTYPE,
            "seq_len": SEQ_LEN,
            "input_seed": INPUT_SEED,
        },
    )
    record_finding(finding)
    check(finding)
    weak = result.weak_controls
    if not measured or weak:
        what = (
            "; ".join(f"{c.name} changed it by only {c.min_error:.3g} ({c.why_not})" for c in weak)
            or "no control could be measured on these weights"
        )
        pytest.fail(
            f"model {model.name!r}, property {name!r}: the negative control must change the "
            f"output by at least {result.control_floor:.3g} ({CONTROL_FLOOR:g} × min(1, "
            f"influence {result.influence:.3g})), but {what}: a test that cannot fail proves "
            "nothing",
            pytrace=False,
        )


def test_attention_output_is_gauge_invariant(model: LoadedModel, record_finding: Recorder) -> None:
    """Q^h → A Q^h, K^h → A^-T K^h per head (restricted by RoPE, q/k norms, GQA)."""
    _measure_symmetry(model, record_finding, "qk_gauge")


def test_value_output_gauge_is_invariant(model: LoadedModel, record_finding: Recorder) -> None:
    """V^h → B V^h, O^h → O^h B^-1 per value head (one B per GQA group)."""
    _measure_symmetry(model, record_finding, "vo_gauge")


def test_mlp_permutation_is_invariant(model: LoadedModel, record_finding: Recorder) -> None:
    """Hidden units of every MLP permuted consistently on the way in and out."""
    _measure_symmetry(model, record_finding, "mlp_permutation")


def test_mlp_unit_scaling_is_invariant(model: LoadedModel, record_finding: Recorder) -> None:
    """Per-unit c in, 1/c out: ReLU (c > 0) or a gated MLP's linear branch (c ≠ 0)."""
    _measure_symmetry(model, record_finding, "mlp_scaling")


def test_residual_rotation_is_invariant(model: LoadedModel, record_finding: Recorder) -> None:
    """RMSNorm gains folded into their readers, then the residual stream rotated."""
    _measure_symmetry(model, record_finding, "residual_rotation")
