"""Singular-value spectra of every projection matrix (seed notebook §4–6), beside the
Marchenko–Pastur prediction and the random-init null.

Definitions in terrain/measures/spectra.py: stable rank Σσ²/σ_max² (the seed's and
WeightWatcher's), participation ratio (Σσ)²/Σσ² (the seed's definition; the eigenvalue
form (Σσ²)²/Σσ⁴ is tracked beside it), share of σ above 1% of σ_max, rank holding 90%
of the nuclear norm, condition number σ_max/σ_min. Asserted only where it holds
independently of training: a random-init model's i.i.d. matrices sit at the
Marchenko–Pastur values within a finite-size band. A trained model's are measured.

Gauge: a matrix's singular values are unchanged by orthogonal maps on either side but not
by the general invertible per-head gauges of BERT and T5 (W_Q^h → A·W_Q^h), nor by MLP
unit scalings: the spectra of single projections are gauge-dependent; the residual QK
form's spectrum (terrain/checks/qk.py) is the invariant counterpart.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from terrain.checks import kit
from terrain.measures.spectra import (
    PROJECTION_ROLES,
    RoleSpectra,
    participation_tolerance,
    stable_rank_tolerance,
)
from terrain.report.battery_plots import layer_curves

if TYPE_CHECKING:
    from terrain.model import LoadedModel

MP_SOURCE = "Marchenko–Pastur law of i.i.d. random-init matrices, finite-size band"
MP_NULL = "Marchenko–Pastur (analytic) for matrices wider than the null measures"
GAUGE_NOTE = (
    "singular values of one projection change under the general per-head Q/K and V/O "
    "gauges and MLP unit scalings; the residual QK form's spectrum is gauge-invariant"
)


def projections(result: kit.BatteryResult) -> list[RoleSpectra]:
    return [s for s in result.spectra.values() if s.role in PROJECTION_ROLES]


def _median(values: list[np.ndarray]) -> float:
    return float(np.median(np.concatenate(values)))


def _measured(model: LoadedModel) -> list[RoleSpectra]:
    measured = projections(model.battery())
    if not measured:
        raise kit.NotApplicableError(f"model {model.name!r} has no projection matrices")
    return measured


def _ratio_null(model: LoadedModel, ratio: str) -> kit.Null | None:
    """The median ratio to Marchenko–Pastur on the null seeds, or the law itself (ratio 1)
    where the null left the spectra to it."""
    sampled = kit.null_of(
        model,
        lambda b: (
            _median([getattr(s, ratio)() for s in projections(b)]) if projections(b) else None
        ),
    )
    if sampled is not None:
        return sampled
    return kit.Null(1.0, MP_NULL)


def _mp_band(model: LoadedModel, tol: float) -> kit.Expected | None:
    """The finite-size band around the Marchenko–Pastur value, asserted at random init."""
    return kit.Expected(1 - tol, 1 + tol, MP_SOURCE) if model.random_init else None


def _per_layer(
    model: LoadedModel,
    roles: tuple[list[RoleSpectra], list[RoleSpectra]],
    values: Callable[[RoleSpectra], NDArray[np.float64]],
    what: str,
    ylabel: str,
    *,
    ratio_to_mp: bool,
) -> kit.Evidence:
    """Each projection role's per-layer `values`, model (solid) against the null seed's
    (dashed); a ratio to Marchenko–Pastur has the law as a second null, drawn at 1."""
    measured, null = roles
    plot = partial(
        layer_curves,
        {s.label: (s.layers, list(values(s))) for s in measured},
        {s.label: (s.layers, list(values(s))) for s in null},
        ylabel=ylabel,
        title=f"{model.name}: {what} per layer",
        reference=1.0 if ratio_to_mp else None,
        reference_label="Marchenko–Pastur" if ratio_to_mp else "",
    )
    return kit.Evidence(f"{what} per layer against the null{'s' if ratio_to_mp else ''}", plot)


def stable_rank(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    measured = _measured(model)
    null = projections(model.null_batteries()[0])
    n_min = min(s.spectra.n for s in measured)
    finding = kit.finding(
        model,
        "spectral_stable_rank",
        statistic="median over projection matrices of stable rank / Marchenko–Pastur value",
        value=_median([s.stable_rank_ratio() for s in measured]),
        expected=kit.band(expect, _mp_band(model, stable_rank_tolerance(n_min))),
        null=_ratio_null(model, "stable_rank_ratio"),
        n=sum(len(s.layers) for s in measured),
        details={
            "roles": {s.label: s.as_dict() for s in measured},
            "null_mean_stable_rank": {s.label: float(np.mean(s.spectra.stable_rank)) for s in null},
            "smallest_dimension": n_min,
        },
        tracked={
            **{f"{s.label} stable_rank": float(np.mean(s.spectra.stable_rank)) for s in measured},
            **{f"{s.label} ratio_to_mp": float(np.mean(s.stable_rank_ratio())) for s in measured},
        },
    )
    evidence = _per_layer(
        model,
        (measured, null),
        RoleSpectra.stable_rank_ratio,
        "stable rank",
        "stable rank / Marchenko–Pastur",
        ratio_to_mp=True,
    )
    return kit.Evaluation(finding, (evidence,))


def participation_ratio(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    measured = _measured(model)
    null = projections(model.null_batteries()[0])
    n_min = min(s.spectra.n for s in measured)
    finding = kit.finding(
        model,
        "spectral_participation_ratio",
        statistic="median over projection matrices of (Σσ)²/Σσ² / Marchenko–Pastur value",
        value=_median([s.participation_ratio_ratio() for s in measured]),
        expected=kit.band(expect, _mp_band(model, participation_tolerance(n_min))),
        null=_ratio_null(model, "participation_ratio_ratio"),
        n=sum(len(s.layers) for s in measured),
        details={
            "definition": "(Σσ)²/Σσ², the seed's; eigen form (Σσ²)²/Σσ⁴ tracked",
            "roles": {
                s.label: {
                    "marchenko_pastur": s.mp.as_dict(),
                    "participation_ratio": [float(x) for x in s.spectra.participation_ratio],
                    "eigen_participation_ratio": [
                        float(x) for x in s.spectra.eigen_participation_ratio
                    ],
                    "active_fraction": [float(x) for x in s.spectra.active_fraction],
                    "rank90": [int(x) for x in s.spectra.rank90],
                }
                for s in measured
            },
        },
        tracked={
            **{
                f"{s.label} participation_ratio": float(np.mean(s.spectra.participation_ratio))
                for s in measured
            },
            **{
                f"{s.label} eigen_participation_ratio": float(
                    np.mean(s.spectra.eigen_participation_ratio)
                )
                for s in measured
            },
            **{
                f"{s.label} active_fraction": float(np.mean(s.spectra.active_fraction))
                for s in measured
            },
            **{
                f"{s.label} rank90_share": float(np.mean(s.spectra.rank90)) / s.spectra.n
                for s in measured
            },
        },
    )
    evidence = _per_layer(
        model,
        (measured, null),
        RoleSpectra.participation_ratio_ratio,
        "participation ratio",
        "(Σσ)²/Σσ² / Marchenko–Pastur",
        ratio_to_mp=True,
    )
    return kit.Evaluation(finding, (evidence,))


def _log10_conditions(roles: list[RoleSpectra]) -> tuple[np.ndarray, int]:
    values = np.concatenate([s.spectra.condition for s in roles])
    finite = values[np.isfinite(values)]
    return np.log10(finite), int(values.size - finite.size)


def _median_log_condition(result: kit.BatteryResult) -> float | None:
    roles = projections(result)
    if not roles:
        return None
    logs, _ = _log10_conditions(roles)
    return float(np.median(logs)) if logs.size else None


def condition_number(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    measured = _measured(model)
    null = projections(model.null_batteries()[0])
    logs, singular = _log10_conditions(measured)
    finding = kit.finding(
        model,
        "spectral_condition_number",
        statistic="median over projection matrices of log10 condition number",
        value=float(np.median(logs)) if logs.size else math.nan,
        expected=kit.band(expect),
        null=kit.null_of(model, _median_log_condition),
        n=sum(len(s.layers) for s in measured),
        details={
            "singular_at_float64_resolution": singular,
            "roles": {
                s.label: {
                    "marchenko_pastur_condition": s.mp.condition,
                    "condition": [
                        float(x) if math.isfinite(x) else None for x in s.spectra.condition
                    ],
                }
                for s in measured
            },
        },
        tracked={
            f"{s.label} log10_condition": float(
                np.median(np.log10(s.spectra.condition[np.isfinite(s.spectra.condition)]))
            )
            for s in measured
            if np.isfinite(s.spectra.condition).any()
        },
    )
    evidence = _per_layer(
        model,
        (measured, null),
        lambda s: np.log10(s.spectra.condition),
        "condition number",
        "log10 condition number",
        ratio_to_mp=False,
    )
    return kit.Evaluation(finding, (evidence,))


SPECTRA = kit.Theme(
    source="seed notebook §4–6; Marchenko–Pastur for random init",
    tolerance=kit.Tolerance(abs=0.01),
    gauge=kit.Gauge.DEPENDENT,
    gauge_note=GAUGE_NOTE,
    kind="weights",
)
SPECTRA.declare(
    "spectral_stable_rank",
    "median over projections of stable rank Σσ²/σ_max² / its Marchenko–Pastur value",
    "stable rank of every projection over its Marchenko–Pastur value n/(1+√y)²: about 1 at "
    "random init (asserted there), lower where training concentrated the spectrum",
    stable_rank,
    kit.NONNEGATIVE,
)
SPECTRA.declare(
    "spectral_participation_ratio",
    "median over projections of (Σσ)²/Σσ² / its Marchenko–Pastur value",
    "participation ratio of every projection over its Marchenko–Pastur value; about 1 at "
    "random init (asserted there); active fraction and rank90 tracked beside it",
    participation_ratio,
    kit.NONNEGATIVE,
)
SPECTRA.declare(
    "spectral_condition_number",
    "median over projections of log10 σ_max/σ_min",
    "condition number of every projection; Marchenko–Pastur gives (1+√y)/(1−√y) for a "
    "rectangular i.i.d. matrix and growth with n for a square one (measured)",
    condition_number,
    kit.REAL,
)
