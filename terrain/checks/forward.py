"""The anatomy reproduces the model, the call census matches the config, and the variation
between consecutive layers after the exact gauge alignment (each on every forward case:
the whole model, or each window of the sample at real size).

- reference_forward: every block, from the library's own input to that block, recomputed
  with the family's reference (terrain.reference: x·Wᵀ + b, row-indexed embeddings,
  LayerNorm/RMSNorm from their formulas, the family's attention scaling, masks, position
  bias or RoPE), the stacks' embeddings from the token ids, and each stack chained from
  the reference embeddings through every reference block: relative error ≤ 1e-5.
- module_call_census: leaf-module calls of one forward by kind (forward hooks) equal what
  the config predicts, written from the model code (terrain.tracing).
- layer_variation: for each pair of consecutive layers, ‖W_{l+1} − W_l‖/‖W_l‖ of every role
  before and after aligning layer l+1 to layer l with the family's exact symmetries
  (terrain.symmetry.layer_variation); the aligned copy must give the same output, else
  the check fails. Measured beside the random-init null.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from terrain.checks import kit
from terrain.errors import TerrainError
from terrain.reference import TOLERANCE, NotReproducedError, reference_families, reproduce
from terrain.symmetry import NotCataloguedError, Weights, catalogued_families, describe
from terrain.symmetry.layer_variation import (
    ROLES,
    LayerVariation,
    measure_layer_variation,
    tolerance,
)
from terrain.symmetry.weights import relative_error
from terrain.tracing import (
    NO_OP_TYPES,
    NotPredictedError,
    call_census,
    census_by_kind,
    forward_inputs,
    predicted_census,
    primary_output,
)

if TYPE_CHECKING:
    from terrain.forward.runner import ForwardCase, ForwardRunner
    from terrain.model import LoadedModel


def _module(model: LoadedModel, runner: ForwardRunner, case: ForwardCase) -> Any:
    try:
        return runner.module(case)
    except TerrainError as e:
        raise kit.NotApplicableError(f"model {model.name!r}: no module to run: {e}") from None


def reference_forward(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    if model.anatomy.family not in reference_families():
        raise kit.NotApplicableError(
            f"model {model.name!r}: no reference forward for family {model.anatomy.family!r} "
            f"(written: {', '.join(reference_families())})"
        )
    runner = model.forward()
    comparisons: list[dict[str, Any]] = []
    worst: tuple[float, str] = (-1.0, "")
    dtypes: set[str] = set()
    for case in runner.cases():
        module = _module(model, runner, case)
        try:
            result = reproduce(module, runner.anatomy(case), runner.config(case), case.inputs)
        except NotReproducedError as e:
            raise kit.NotApplicableError(f"model {model.name!r}: not reproduced: {e}") from None
        dtypes.add(str(case.dtype).removeprefix("torch."))
        for c in result.comparisons:
            comparisons.append({**c.as_dict(), "case": case.label})
        if result.max_error > worst[0]:
            worst = (result.max_error, f"{case.label}: {result.worst.what}")
    runner.release()
    finding = kit.finding(
        model,
        "reference_forward",
        value=worst[0],
        expected=kit.Expected(
            None, TOLERANCE, "float32 precision: the anatomy's roles are the model"
        ),
        null=None,
        n=len(comparisons),
        details={"worst": worst[1], "comparisons": comparisons, "dtype": sorted(dtypes)},
    )
    return kit.Evaluation(finding)


def call_census_check(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    runner = model.forward()
    mismatched: dict[str, Any] = {}
    cases: list[dict[str, Any]] = []
    total = 0
    for case in runner.cases():
        config = runner.config(case)
        try:
            predicted = predicted_census(config)
        except NotPredictedError as e:
            raise kit.NotApplicableError(f"model {model.name!r}: not predicted: {e}") from None
        calls = call_census(_module(model, runner, case), case.inputs)
        measured = census_by_kind(calls)
        kinds = sorted(set(predicted) | set(measured))
        off = {
            k: {"predicted": predicted.get(k, 0), "measured": measured.get(k, 0)}
            for k in kinds
            if predicted.get(k, 0) != measured.get(k, 0)
        }
        mismatched.update({f"{case.label}: {k}": v for k, v in off.items()})
        total += sum(measured.values())
        cases.append(
            {
                "case": case.label,
                "predicted": predicted,
                "measured": measured,
                "by_type": dict(sorted(calls.items())),
            }
        )
    runner.release()
    finding = kit.finding(
        model,
        "module_call_census",
        value=float(len(mismatched)),
        expected=kit.Expected(0.0, 0.0, "prediction from config.json and the model code"),
        null=None,
        details={
            "predicted": cases[0]["predicted"],
            "measured": cases[0]["measured"],
            "cases": cases,
            "mismatched": mismatched,
            "not_counted": sorted(NO_OP_TYPES),
            "total_calls": total,
        },
    )
    return kit.Evaluation(finding)


def _variation(
    module: Any, anatomy: Any, config: Any, inputs: Any, *, in_place: bool = False
) -> tuple[LayerVariation, float, float]:
    """The measure on one module, the output error of its aligned copy, and its tolerance.

    `in_place` aligns the module itself (a window, dropped after): no aligned copy.
    """
    weights = Weights(module)
    try:
        arch = describe(anatomy, config, weights)
    except NotCataloguedError as e:
        raise kit.NotApplicableError(str(e)) from None
    reference = primary_output(weights.fresh().forward(inputs))
    result = measure_layer_variation(arch, weights, in_place=in_place)
    error = relative_error(primary_output(result.aligned_weights().forward(inputs)), reference)
    tol = tolerance(arch, result.symmetries_used, weights.dtype)
    # The aligned copy holds the module's tensors and its own: not kept past this call.
    return replace(result, aligned=None), error, tol


def layer_variation(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    family = model.anatomy.family
    if family not in catalogued_families():
        raise kit.NotApplicableError(
            f"model {model.name!r}: no symmetry catalogue entry for family {family!r}"
        )
    runner = model.forward()
    pairs: list[dict[str, Any]] = []
    after: list[float] = []
    before: list[float] = []
    by_role: dict[str, list[float]] = {r: [] for r in ROLES}
    used: set[str] = set()
    problems: list[str] = []
    errors: list[float] = []
    for case in runner.cases(pairs=True):
        module = _module(model, runner, case)
        # a window is aligned in place (and dropped after); the whole model is shared
        in_place = case.window is not None
        result, error, tol = _variation(
            module, runner.anatomy(case), runner.config(case), case.inputs, in_place=in_place
        )
        del module
        if in_place:
            runner.release()
        errors.append(error)
        if not error <= tol:
            problems.append(
                f"model {model.name!r}, property 'layer_variation' ({case.label}): the gauge "
                f"alignment changed the output by {error:.3g} > {tol:g}: an applied map is "
                "not a symmetry"
            )
        for p in result.pairs:
            pairs.append({**p.as_dict(), "case": case.label})
        after += result.values("after")
        before += result.values("before")
        for r in ROLES:
            by_role[r] += result.values("after", r)
        used |= result.symmetries_used
    runner.release()
    if not after:
        raise kit.NotApplicableError(f"model {model.name!r}: fewer than two layers per stack")
    null = _null(model)
    tracked = {"median_before": statistics.median(before)}
    tracked |= {f"median_after_{r}": statistics.median(v) for r, v in by_role.items() if v}
    finding = kit.finding(
        model,
        "layer_variation",
        statistic="median over consecutive layer pairs and roles of ‖W_{l+1} − W_l‖/‖W_l‖ "
        "after gauge alignment",
        value=statistics.median(after),
        expected=None,
        null=null,
        n=len(after),
        details={
            "pairs": pairs,
            "median_before": statistics.median(before),
            "symmetries_used": sorted(used),
            "alignment_output_error": max(errors),
        },
        tracked=tracked,
    )
    return kit.Evaluation(finding, problems=tuple(problems))


def _null(model: LoadedModel) -> kit.Null:
    """The same measure on the first random-init seed where a whole null module can be
    built; else the independent-layers law (√2 before alignment)."""
    null = model.null()
    try:
        module = null.module("float64")
    except TerrainError:
        return kit.Null(
            math.sqrt(2.0),
            "analytic: independent i.i.d. layers differ by √2 of their norm before alignment "
            "(no whole random-init module at this size)",
        )
    inputs = forward_inputs(
        null.plan.config, seq_len=8, seed=0, device=model.device, dtype=torch.float64
    )
    result, _, _ = _variation(module, null.anatomy, null.plan.config, inputs)
    return kit.Null(result.median("after"), "random-init null (seed 1), same measure")


kit.declare(
    kit.Property(
        name="reference_forward",
        statistic="max relative error of reference vs library (blocks, embeddings, chained)",
        claim="a block recomputed from the anatomy's roles alone equals the library's block",
        source="seeds 000 and 001 (the OLMo-3 trace)",
        version=1,
        tolerance=kit.Tolerance(abs=1e-5),
        domain=kit.NONNEGATIVE,
        gauge=kit.Gauge.NONE,
        kind="forward",
        evaluate=reference_forward,
    )
)
kit.declare(
    kit.Property(
        name="module_call_census",
        statistic="module kinds whose call count differs from the config's prediction",
        claim="the module calls of one forward equal what the config predicts",
        source="seeds 000 (OLMo-3 trace: 388 calls) and 001",
        version=1,
        tolerance=kit.Tolerance(abs=0.0),
        domain=kit.NONNEGATIVE,
        gauge=kit.Gauge.NONE,
        kind="forward",
        evaluate=call_census_check,
    )
)
kit.declare(
    kit.Property(
        name="layer_variation",
        statistic="median over consecutive layer pairs and roles of the aligned residual",
        claim="Frobenius residual between consecutive layers after aligning them with the "
        "family's exact symmetries only; the aligned copy's output is checked unchanged",
        source="seed 002 (its O(d_h) gauge on Q, K, V, O is wrong under RoPE, q/k norms, GQA)",
        version=1,
        tolerance=kit.Tolerance(abs=0.01),
        domain=kit.NONNEGATIVE,
        gauge=kit.Gauge.INVARIANT,
        gauge_note="residuals after alignment by the exact gauge: the gauge-invariant "
        "counterpart of the cross-layer cosine",
        kind="forward",
        evaluate=layer_variation,
    )
)
