"""Singular-value spectra of every projection matrix (seed notebook §4–6), beside the
Marchenko–Pastur prediction and the random-init replica.

Definitions in terrain/measures/spectra.py: stable rank Σσ²/σ_max² (the seed's and
WeightWatcher's), participation ratio (Σσ)²/Σσ² (the seed's definition; the eigenvalue
form (Σσ²)²/Σσ⁴ is tracked beside it), share of σ above 1% of σ_max, rank holding 90%
of the nuclear norm, condition number σ_max/σ_min. Asserted only where it holds
independently of training: a random-init model's i.i.d. matrices sit at the
Marchenko–Pastur values within a finite-size band. A trained model's are measured.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from plugins.assertions import check
from plugins.recording import Recorder
from terrain.battery import BatteryResult, battery_of, null_battery_of
from terrain.findings import Expected, Finding, Null
from terrain.measures.spectra import (
    PROJECTION_ROLES,
    RoleSpectra,
    participation_tolerance,
    stable_rank_tolerance,
)
from terrain.model import LoadedModel
from terrain.report.battery_plots import layer_curves
from terrain.report.evidence import Evidence

pytestmark = pytest.mark.weights

NULL_KIND = "random-init replica of the same config"
MP_SOURCE = "Marchenko–Pastur law of i.i.d. random-init matrices, finite-size band"


def _projections(result: BatteryResult) -> list[RoleSpectra]:
    return [s for s in result.spectra.values() if s.role in PROJECTION_ROLES]


def _median(values: list[np.ndarray]) -> float:
    return float(np.median(np.concatenate(values)))


def _need(model: LoadedModel) -> tuple[list[RoleSpectra], list[RoleSpectra]]:
    measured = _projections(battery_of(model))
    if not measured:
        pytest.skip(f"model {model.name!r}: not applicable, no projection matrices")
    return measured, _projections(null_battery_of(model))


def test_stable_rank_against_marchenko_pastur(model: LoadedModel, record_finding: Recorder) -> None:
    """Stable rank Σσ²/σ_max² of every projection over its Marchenko–Pastur value
    n/(1+√y)²: about 1 at random init (asserted there), lower where training concentrated
    the spectrum (seed §4–6 report the stable rank per weight type)."""
    measured, null = _need(model)
    n_min = min(s.spectra.n for s in measured)
    tol = stable_rank_tolerance(n_min)
    finding = Finding(
        model=model.name,
        property="spectral_stable_rank",
        statistic="median over projection matrices of stable rank / Marchenko–Pastur value",
        value=_median([s.stable_rank_ratio() for s in measured]),
        expected=Expected(1 - tol, 1 + tol, MP_SOURCE) if model.random_init else None,
        null=Null(_median([s.stable_rank_ratio() for s in null]), NULL_KIND) if null else None,
        n=sum(len(s.layers) for s in measured),
        random_init=model.random_init,
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
    plot = layer_curves(
        {s.label: (s.layers, list(s.stable_rank_ratio())) for s in measured},
        {s.label: (s.layers, list(s.stable_rank_ratio())) for s in null},
        ylabel="stable rank / Marchenko–Pastur",
        title=f"{model.name}: stable rank per layer",
        reference=1.0,
        reference_label="Marchenko–Pastur",
    )
    record_finding(finding, [Evidence("stable rank per layer against the nulls", plot)])
    check(finding)


def test_participation_ratio_against_marchenko_pastur(
    model: LoadedModel, record_finding: Recorder
) -> None:
    """Participation ratio (Σσ)²/Σσ² (the seed's definition) of every projection over its
    Marchenko–Pastur value; asserted about 1 at random init. The share of σ above 1% of
    σ_max and the rank holding 90% of the nuclear norm are tracked beside it."""
    measured, null = _need(model)
    n_min = min(s.spectra.n for s in measured)
    tol = participation_tolerance(n_min)
    finding = Finding(
        model=model.name,
        property="spectral_participation_ratio",
        statistic="median over projection matrices of (Σσ)²/Σσ² / Marchenko–Pastur value",
        value=_median([s.participation_ratio_ratio() for s in measured]),
        expected=Expected(1 - tol, 1 + tol, MP_SOURCE) if model.random_init else None,
        null=(
            Null(_median([s.participation_ratio_ratio() for s in null]), NULL_KIND)
            if null
            else None
        ),
        n=sum(len(s.layers) for s in measured),
        random_init=model.random_init,
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
    plot = layer_curves(
        {s.label: (s.layers, list(s.participation_ratio_ratio())) for s in measured},
        {s.label: (s.layers, list(s.participation_ratio_ratio())) for s in null},
        ylabel="(Σσ)²/Σσ² / Marchenko–Pastur",
        title=f"{model.name}: participation ratio per layer",
        reference=1.0,
        reference_label="Marchenko–Pastur",
    )
    record_finding(finding, [Evidence("participation ratio per layer against the nulls", plot)])
    check(finding)


def _log10_conditions(roles: list[RoleSpectra]) -> tuple[np.ndarray, int]:
    values = np.concatenate([s.spectra.condition for s in roles])
    finite = values[np.isfinite(values)]
    return np.log10(finite), int(values.size - finite.size)


def test_condition_number(model: LoadedModel, record_finding: Recorder) -> None:
    """Condition number σ_max/σ_min of every projection (seed §4–6): Marchenko–Pastur
    predicts (1+√y)/(1−√y) for a rectangular i.i.d. matrix and growth with n for a square
    one, so the random-init replica is the null. Measured, not asserted."""
    measured, null = _need(model)
    logs, singular = _log10_conditions(measured)
    null_logs, _ = _log10_conditions(null) if null else (np.zeros(0), 0)
    finding = Finding(
        model=model.name,
        property="spectral_condition_number",
        statistic="median over projection matrices of log10 condition number",
        value=float(np.median(logs)) if logs.size else math.nan,
        expected=None,
        null=Null(float(np.median(null_logs)), NULL_KIND) if null_logs.size else None,
        n=sum(len(s.layers) for s in measured),
        random_init=model.random_init,
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
    plot = layer_curves(
        {s.label: (s.layers, list(np.log10(s.spectra.condition))) for s in measured},
        {s.label: (s.layers, list(np.log10(s.spectra.condition))) for s in null},
        ylabel="log10 condition number",
        title=f"{model.name}: condition number per layer",
    )
    record_finding(finding, [Evidence("condition number per layer against the null", plot)])
    check(finding)
