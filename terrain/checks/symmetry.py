"""Exact weight symmetries: the output is unchanged, and each negative control changes it.

For every forward case of a model (the whole model, or each window of its sample at real
size: terrain/forward/), each symmetry of the family's catalogue (terrain.symmetry) is
applied to a copy of the weights with seeded random group elements, and the module's
primary output on fixed seeded inputs is compared with the original: the largest
relative error over the draws and cases must be within the tolerance (1e-10 in float64,
1e-5 in float32 or where the library computes the touched operation in float32). Each
negative control (the same kind of map where it is not a symmetry) must change the output
by O(1): at least CONTROL_FLOOR (1e-2), scaled down by the output's dependence on the
touched tensors where zeroing them changes it by less than 1 (tiny random inits;
terrain.symmetry.measure), unless these weights make it a symmetry too (recorded). The
control's error is the finding's null. A symmetry that does not apply to the family is
not applicable, with the catalogue's reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from terrain.checks import kit
from terrain.errors import TerrainError
from terrain.families.decoder import FLOAT32_NORM
from terrain.symmetry import (
    CONTROL_FLOOR,
    NotApplicable,
    NotCataloguedError,
    SymmetryResult,
    Weights,
    catalogue,
    catalogued_families,
    measure,
)
from terrain.symmetry.measure import TOLERANCE
from terrain.symmetry.native_norms import native_norms, resolution

if TYPE_CHECKING:
    from terrain.model import LoadedModel

DRAWS = (0, 1, 2)  # seeds of the group elements
CONTROL_DRAWS = (0,)  # seeds of the controls' maps: one failure of O(1) is the evidence


def measure_symmetry(model: LoadedModel, name: str) -> kit.Evaluation:
    family = model.anatomy.family
    if family not in catalogued_families():
        raise kit.NotApplicableError(
            f"model {model.name!r}: no symmetry catalogue entry for family {family!r} "
            f"(catalogued: {', '.join(catalogued_families())})"
        )
    runner = model.forward()
    results: list[tuple[Any, SymmetryResult]] = []
    skipped: list[str] = []  # cases where it does not apply (a hybrid stack's linear blocks)
    derivation = float32_reason = ""
    resolutions: list[tuple[float, str, list[str]]] = []
    for case in runner.cases():
        try:
            module = runner.module(case)
        except TerrainError as e:
            raise kit.NotApplicableError(f"model {model.name!r}: no module to run: {e}") from None
        weights = Weights(module)
        try:
            entries = catalogue(runner.anatomy(case), runner.config(case), weights)
        except NotCataloguedError as e:
            raise kit.NotApplicableError(f"model {model.name!r}: {e}") from None
        entry = entries[name]
        if isinstance(entry, NotApplicable):
            skipped.append(f"{case.label}: {entry.reason}")
            continue
        derivation = entry.derivation
        float32_reason = entry.float32_reason or ""
        # the library's float32-casting RMSNorms run in float64 for the check, so the
        # output has float64 resolution (terrain/symmetry/native_norms.py)
        with native_norms(module) as patched:
            result = measure(weights, entry, case.inputs, DRAWS, control_seeds=CONTROL_DRAWS)
            resolutions.append((*resolution(module, case.dtype, patched=True), patched))
        results.append((case, result))
    runner.release()
    if not results:  # no case of this model has what the symmetry acts on
        reason = skipped[0].split(": ", 1)[1] if len(skipped) == 1 else "; ".join(skipped)
        raise kit.NotApplicableError(f"model {model.name!r}: {name}: {reason}")
    worst_case, worst = max(results, key=lambda x: x[1].max_error)
    tolerance = max(r.tolerance for _, r in results)
    if float32_reason.endswith(FLOAT32_NORM) and max(r[0] for r in resolutions) < 1e-12:
        # the only float32 step was the norm's cast, and the check ran the norms in float64
        tolerance = TOLERANCE[torch.float64]
        float32_reason = ""
    controls = [r.min_control_error for _, r in results]
    measured_controls = sorted({c.name for _, r in results for c in r.measured_controls})
    source = f"exact symmetry ({derivation})"
    if float32_reason:
        source += f"; float32 precision: {float32_reason}"
    dtypes = sorted({str(case.dtype).removeprefix("torch.") for case, _ in results})
    finding = kit.finding(
        model,
        name,
        statistic="max relative change of the output over seeded group elements",
        value=worst.max_error,
        expected=kit.Expected(None, tolerance, source),
        null=kit.Null(
            min(controls),
            "negative control, min relative change: " + ", ".join(measured_controls),
        ),
        n=len(DRAWS) * len(results),
        seed=DRAWS[0],
        details={
            **worst.as_dict(),
            "dtype": dtypes[0] if len(dtypes) == 1 else dtypes,
            "dtype_reason": worst_case.dtype_reason,
            "cases": [
                {"case": case.label, "max_error": r.max_error, "min_control": r.min_control_error}
                for case, r in results
            ],
            "worst_case": worst_case.label,
            # the finest relative change the output path represents (its dtype's ε, or
            # float32's where a norm still casts); a violation below it cannot be seen
            "resolution": max(r[0] for r in resolutions),
            "resolution_reason": max(resolutions)[1],
            "norms_in_input_dtype": sorted({c for r in resolutions for c in r[2]}),
            "not_applicable_cases": skipped,
        },
    )
    problems = [_weak(model, name, case, r) for case, r in results]
    return kit.Evaluation(finding, problems=tuple(p for p in problems if p))


def _weak(model: LoadedModel, name: str, case: Any, result: SymmetryResult) -> str:
    """Why a case's negative controls cannot fail the check ('' when they can)."""
    measured = result.measured_controls
    weak = result.weak_controls
    if measured and not weak:
        return ""
    what = (
        "; ".join(f"{c.name} changed it by only {c.min_error:.3g} ({c.why_not})" for c in weak)
        or "no control could be measured on these weights"
    )
    return (
        f"model {model.name!r}, property {name!r} ({case.label}): the negative control must "
        f"change the output by at least {result.control_floor:.3g} ({CONTROL_FLOOR:g} × "
        f"min(1, influence {result.influence:.3g})), but {what}: a test that cannot fail "
        "proves nothing"
    )


def _evaluator(name: str) -> Any:
    def evaluate(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
        return measure_symmetry(model, name)

    return evaluate


# Symmetries whose touched operations the libraries compute in the module's dtype.
FLOAT64_EXACT = ("vo_gauge", "mlp_permutation", "mlp_scaling")
SYMMETRY_CLAIMS = {
    "qk_gauge": "Q^h → A Q^h, K^h → A^-T K^h per head (restricted by RoPE, q/k norms, GQA) "
    "leaves the output unchanged; a map of the same kind that is not a symmetry changes it",
    "vo_gauge": "V^h → B V^h, O^h → O^h B^-1 per value head (one B per GQA group) leaves the "
    "output unchanged",
    "mlp_permutation": "hidden units of every MLP permuted consistently on the way in and out "
    "leave the output unchanged",
    "mlp_scaling": "per-unit c in, 1/c out (ReLU: c > 0; a gated MLP's linear branch: c ≠ 0) "
    "leaves the output unchanged",
    "residual_rotation": "RMSNorm gains folded into their readers, then the residual stream "
    "rotated, leave the output unchanged",
}
for _name, _claim in SYMMETRY_CLAIMS.items():
    kit.declare(
        kit.Property(
            name=_name,
            statistic="max relative change of the output over seeded group elements",
            claim=_claim,
            source="the model code (derivations in terrain/symmetry); seed 002 for the gauges",
            version=1,
            # Symmetry errors: ~1e-15 in float64; where the library computes in float32, ~1e-7.
            tolerance=kit.Tolerance(abs=1e-10 if _name in FLOAT64_EXACT else 1e-5),
            domain=kit.NONNEGATIVE,
            gauge=kit.Gauge.NONE,
            kind="forward",
            evaluate=_evaluator(_name),
        )
    )
