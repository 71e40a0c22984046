"""The least stable rank over every projection matrix, beside the null of that minimum.

A median over projections (spectral_stable_rank) cannot see one collapsed matrix: a single
low-rank W_Q moves it by nothing. This property reports the smallest stable-rank ratio
(stable rank Σσ²/σ_max² over its Marchenko–Pastur value, terrain/measures/spectra.py) over
all m projections of the model, and its null is the same minimum over the same m matrices
of each random-init seed: a minimum over m beside the null of a minimum over m
(docs/statistics.md), so its test against chance is calibrated for the extreme.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from terrain.checks import kit
from terrain.checks.spectra import MP_NULL, SPECTRA, projections

if TYPE_CHECKING:
    from terrain.model import LoadedModel


def _least(result: kit.BatteryResult) -> tuple[float, str, int] | None:
    """The smallest ratio, the matrix it belongs to, and how many matrices were compared."""
    found = projections(result)
    if not found:
        return None
    best = (np.inf, "", 0)
    count = 0
    for s in found:
        ratios = np.asarray(s.stable_rank_ratio(), dtype=np.float64)
        count += len(ratios)
        i = int(np.argmin(ratios))
        if ratios[i] < best[0]:
            best = (float(ratios[i]), f"{s.label} layer {s.layers[i]}", 0)
    return best[0], best[1], count


def least_stable_rank(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    least = _least(model.battery())
    if least is None:
        raise kit.NotApplicableError(f"model {model.name!r} has no projection matrices")
    value, where, m = least

    def statistic(b: kit.BatteryResult) -> float | None:
        found = _least(b)
        return None if found is None or found[2] != m else found[0]

    null = kit.null_of(model, statistic) or kit.Null(1.0, MP_NULL)
    finding = kit.finding(
        model,
        "spectral_stable_rank_min",
        statistic=f"least stable rank / Marchenko–Pastur over {m} projections ({where})",
        value=value,
        expected=kit.band(expect),
        null=null,
        n=m,
        details={"least": where, "matrices": m},
    )
    return kit.Evaluation(finding)


SPECTRA.declare(
    "spectral_stable_rank_min",
    "least stable rank Σσ²/σ_max² / its Marchenko–Pastur value over projections",
    "no projection's spectrum collapsed beyond chance: the least stable-rank ratio "
    "over all m projections beside the least of the same m matrices at random init",
    least_stable_rank,
    kit.NONNEGATIVE,
    source="seed notebook §4–6 (stable rank); the null of a minimum for the extreme",
)
