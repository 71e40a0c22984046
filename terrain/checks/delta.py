"""Deltas against a base model (`--base-model NAME_OR_PATH`): what a fine-tune changed.

Measured on every role the model shares with its base (same canonical role and shape,
terrain/delta; the rest is listed in the details), definitions in terrain/measures/delta.py:

- `delta_relative_change`: the largest ‖W − W₀‖/‖W₀‖ over every shared tensor, with the
  cosine of each pair in the details and a layer × role heatmap. `max: x` in models.yaml
  asserts that no tensor changed by more than x. Null: √2, the relative change of two
  unrelated i.i.d. matrices of one scale (independent random inits), exact in the limit.
- `delta_effective_rank`: the largest effective rank of ΔW over the per-layer maps, with
  each map's numerical rank and stable rank in the details; `max: r` asserts ΔW's effective
  rank stays below r (a fine-tune, a LoRA merge, is of low rank). Null: the
  Marchenko–Pastur effective rank of an i.i.d. ΔW of the same shape (unrelated inits).
- `delta_alpha`: the median over maps of α(W) − α(W₀), α of W from the model's battery and
  α of W₀ from the base's spectrum formed in the delta pass (the same fit, the same
  eigenvalue rule); measured, no null (an unchanged map gives 0).

Without a base model they are not applicable. Each finding records the base model's
name, source and fingerprint. Their values belong to the pair (model, base): they are
judged by their bands only, never compared with the model's baselines. Gauge: a symmetry
of the model's function moves W and leaves W₀ alone, so every delta is gauge-dependent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import Field, model_validator

from terrain.checks import kit
from terrain.delta import DeltaResult, TensorChange
from terrain.measures.spectra import marchenko_pastur_effective_rank
from terrain.report.battery_plots import layer_curves
from terrain.report.delta_plots import Grid, change_heatmap

if TYPE_CHECKING:
    from terrain.model import LoadedModel

NO_BASE = "no base model to compare with (pass --base-model NAME_OR_PATH)"
UNRELATED = "analytic: √2, two unrelated i.i.d. matrices of one scale (independent random inits)"
MP_UNRELATED = (
    "analytic: Marchenko–Pastur effective rank of an i.i.d. ΔW of the same shape (two "
    "unrelated random inits), the largest over the maps"
)
NO_LAYER = "none"  # the heatmap column of a stack's tensors without a layer


class UpperBound(kit.Expectation):
    """`max: x`: the value may not exceed x (the same as `band: [0, x]`)."""

    max: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> UpperBound:
        if self.max is not None and self.band is not None:
            raise ValueError("give either max or band, not both")
        return self


def _expected(expect: kit.Expectation | None) -> kit.Expected | None:
    if isinstance(expect, UpperBound) and expect.max is not None:
        return kit.Expected(None, expect.max, expect.source)
    return kit.band(expect)


def _deltas(model: LoadedModel) -> DeltaResult:
    if model.base is None:
        raise kit.NotApplicableError(NO_BASE)
    return model.deltas()


def _common(deltas: DeltaResult) -> dict[str, Any]:
    """What every delta finding records: the base model and what was not compared."""
    return {
        "base_model": deltas.base_record(),
        "compared": len(deltas.changes),
        **deltas.pairing.listing(),
    }


def _beyond(
    changes: list[TensorChange],
    expected: kit.Expected | None,
    value: Callable[[TensorChange], float],
) -> tuple[list[TensorChange], str]:
    """The changes outside the band, and the statistic's words naming them ('' if none)."""
    if expected is None:
        return [], ""
    out = [c for c in changes if not expected.contains(value(c))]
    if not out:
        return [], ""
    names = ", ".join(c.label for c in out[:5]) + (
        f" and {len(out) - 5} more" if len(out) > 5 else ""
    )
    return out, f"; {len(out)} of {len(changes)} outside {expected.describe()}: {names}"


def _tracked_max(
    changes: list[TensorChange], value: Callable[[TensorChange], float], key: str
) -> dict[str, float]:
    """Per stack and role, the largest value over its layers (a baseline-sized summary)."""
    out: dict[str, float] = {}
    for c in changes:
        name = f"{c.stack}.{c.row} {key}"
        out[name] = max(out.get(name, -math.inf), value(c))
    return out


def _grids(changes: list[TensorChange]) -> dict[str, Grid]:
    """One role × layer grid of relative change per stack ("none": tensors of no layer)."""
    grids: dict[str, Grid] = {}
    for stack in dict.fromkeys(c.stack for c in changes):
        mine = [c for c in changes if c.stack == stack]
        roles = list(dict.fromkeys(c.role for c in mine))
        place: dict[str, tuple[int, bool]] = {}  # each role's weight, then its bias
        for c in mine:
            place.setdefault(c.row, (roles.index(c.role), c.kind != "weight"))
        rows = sorted(place, key=place.__getitem__)
        layers = sorted({c.layer for c in mine if c.layer is not None})
        columns = [str(x) for x in layers] + (
            [NO_LAYER] if any(c.layer is None for c in mine) else []
        )
        values = np.full((len(rows), len(columns)), np.nan)
        for c in mine:
            column = NO_LAYER if c.layer is None else str(c.layer)
            values[rows.index(c.row), columns.index(column)] = c.relative_change
        grids[stack] = Grid(rows, columns, values)
    return grids


def relative_change(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    deltas = _deltas(model)
    measured = [c for c in deltas.changes if math.isfinite(c.relative_change)]
    if not measured:
        raise kit.NotApplicableError(
            f"model {model.name!r}: every tensor shared with base {deltas.base!r} is 0 in the base"
        )
    worst = max(measured, key=lambda c: c.relative_change)
    expected = _expected(expect)
    beyond, words = _beyond(measured, expected, lambda c: c.relative_change)
    finding = kit.finding(
        model,
        "delta_relative_change",
        statistic=f"largest relative change ‖W − W₀‖/‖W₀‖ of {len(measured)} tensors against "
        f"base {deltas.base!r}{words}; the largest at {worst.label} ({worst.tensor!r})",
        value=worst.relative_change,
        expected=expected,
        null=kit.Null(math.sqrt(2.0), UNRELATED),
        n=len(measured),
        details={
            **_common(deltas),
            "largest": worst.label,
            "outside_band": [c.label for c in beyond],
            "from_zero": [c.label for c in deltas.changes if not math.isfinite(c.relative_change)],
            "tensors": [c.as_dict() for c in deltas.changes],
            "seconds": deltas.seconds,
            "bytes_read": deltas.bytes_read,
            "peak_working_bytes": deltas.peak_working_bytes,
        },
        tracked=_tracked_max(measured, lambda c: c.relative_change, "max_relative_change"),
    )
    plot = partial(
        change_heatmap,
        _grids(deltas.changes),
        f"{model.name} against {deltas.base}: ‖W − W₀‖/‖W₀‖ per layer and role",
        "relative change",
    )
    return kit.Evaluation(finding, (kit.Evidence("relative change per layer and role", plot),))


def _erank(c: TensorChange) -> float:
    assert c.spectrum is not None  # maps only
    return c.spectrum.effective_rank


def _maps(model: LoadedModel) -> tuple[DeltaResult, list[TensorChange]]:
    deltas = _deltas(model)
    maps = deltas.maps()
    if not maps:
        raise kit.NotApplicableError(
            f"model {model.name!r} shares no per-layer 2-D weight with base {deltas.base!r}"
        )
    return deltas, maps


def _by_role(
    maps: list[TensorChange], value: Callable[[TensorChange], float]
) -> dict[str, tuple[list[int], list[float]]]:
    out: dict[str, tuple[list[int], list[float]]] = {}
    for c in maps:
        layers, values = out.setdefault(f"{c.stack}.{c.role}", ([], []))
        layers.append(int(c.layer or 0))
        values.append(value(c))
    return out


def effective_rank(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    deltas, maps = _maps(model)
    worst = max(maps, key=_erank)
    expected = _expected(expect)
    beyond, words = _beyond(maps, expected, _erank)
    mp = {shape: marchenko_pastur_effective_rank(*shape) for shape in {c.shape for c in maps}}
    assert worst.spectrum is not None
    finding = kit.finding(
        model,
        "delta_effective_rank",
        statistic=f"largest effective rank of ΔW = W − W₀ over {len(maps)} maps against base "
        f"{deltas.base!r}{words}; the largest at {worst.label} (n = {worst.spectrum.n})",
        value=_erank(worst),
        expected=expected,
        null=kit.Null(max(mp.values()), MP_UNRELATED),
        n=len(maps),
        details={
            **_common(deltas),
            "definition": "Roy and Vetterli 2007: exp of the entropy of σ/Σσ of ΔW; 0 for ΔW = 0",
            "largest": worst.label,
            "outside_band": [c.label for c in beyond],
            "maps": [{**c.spectrum_dict(), "marchenko_pastur": mp[c.shape]} for c in maps],
        },
        tracked=_tracked_max(maps, _erank, "max_effective_rank"),
    )
    plot = partial(
        layer_curves,
        _by_role(maps, _erank),
        _by_role(maps, lambda c: mp[c.shape]),
        ylabel="effective rank of ΔW",
        title=f"{model.name} against {deltas.base}: effective rank of ΔW",
        dashed="Marchenko–Pastur, unrelated inits",
    )
    return kit.Evaluation(finding, (kit.Evidence("effective rank of ΔW per layer", plot),))


def _alphas(
    model: LoadedModel, maps: list[TensorChange]
) -> list[tuple[TensorChange, float, float]]:
    """(map, α of W from the model's battery, α of W₀) for every map fitted in both."""
    spectra = model.battery().spectra
    out = []
    for c in maps:
        s = spectra.get(f"{c.stack}.{c.role}")
        if s is None or s.esd is None or c.layer not in s.layers or c.spectrum is None:
            continue
        a = float(s.esd.power_law.alpha[s.layers.index(c.layer)])
        a0 = c.spectrum.base_alpha.alpha
        if math.isfinite(a) and math.isfinite(a0):
            out.append((c, a, a0))
    return out


def alpha_shift(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    deltas, maps = _maps(model)
    fitted = _alphas(model, maps)
    if not fitted:
        raise kit.NotApplicableError(
            f"model {model.name!r}: no map shared with base {deltas.base!r} has a power-law "
            "tail fit in both"
        )
    shifts = np.array([a - a0 for _, a, a0 in fitted])
    alpha = {c.tensor: a for c, a, _ in fitted}
    base_alpha = {c.tensor: a0 for c, _, a0 in fitted}
    kept = [c for c, _, _ in fitted]
    finding = kit.finding(
        model,
        "delta_alpha",
        statistic=f"median over {len(fitted)} maps of α(W) − α(W₀) against base {deltas.base!r}",
        value=float(np.median(shifts)),
        expected=_expected(expect),
        null=None,
        n=len(fitted),
        details={
            **_common(deltas),
            "null_note": "no chance model: an unchanged map gives 0",
            "maps": [
                {"label": c.label, "tensor": c.tensor, "alpha": a, "base_alpha": a0}
                for c, a, a0 in fitted
            ],
            "largest_shift": kept[int(np.argmax(np.abs(shifts)))].label,
        },
        tracked={
            f"{k} median_alpha_shift": float(np.median(v)) if v else math.nan
            for k, (_, v) in _by_role(
                kept, lambda c: alpha[c.tensor] - base_alpha[c.tensor]
            ).items()
        },
    )
    plot = partial(
        layer_curves,
        _by_role(kept, lambda c: alpha[c.tensor]),
        _by_role(kept, lambda c: base_alpha[c.tensor]),
        ylabel="power-law α",
        title=f"{model.name}: α per layer against base {deltas.base}",
        dashed="base model",
    )
    return kit.Evaluation(finding, (kit.Evidence("α per layer against the base model", plot),))


GAUGE_NOTE = (
    "a symmetry of the model's function moves W and leaves the base's W₀ alone: the delta "
    "of a gauge-transformed copy of the base is not 0"
)
DELTA = kit.Theme(
    source="the base model given by --base-model (WeightWatcher's base_model option)",
    tolerance=kit.Tolerance(abs=1e-6),  # not compared with baselines (the pair's value)
    gauge=kit.Gauge.DEPENDENT,
    gauge_note=GAUGE_NOTE,
    kind="weights",
    compared_with_baselines=False,
)
DELTA.declare(
    "delta_relative_change",
    "largest ‖W − W₀‖_F/‖W₀‖_F over the tensors shared with the base model",
    "how far every tensor moved from the base model (--base-model): no tensor changed by more "
    "than the band's `max` (measured without one); √2 for unrelated random inits",
    relative_change,
    kit.NONNEGATIVE,
    expect=UpperBound,
)
replace(DELTA, source=DELTA.source + "; effective rank: Roy and Vetterli 2007").declare(
    "delta_effective_rank",
    "largest effective rank exp H(σ/Σσ) of ΔW = W − W₀ over the maps shared with the base",
    "a fine-tune's change ΔW of every map is of low rank: its effective rank stays below the "
    "band's `max` (measured without one), beside Marchenko–Pastur for unrelated inits",
    effective_rank,
    kit.NONNEGATIVE,
    expect=UpperBound,
)
replace(DELTA, source=DELTA.source + "; α: Clauset, Shalizi and Newman 2009").declare(
    "delta_alpha",
    "median over the maps shared with the base model of α(W) − α(W₀)",
    "the power-law tail exponent α of every map against the base model's α of the same map "
    "(measured; a band to opt into)",
    alpha_shift,
    kit.REAL,
)
