"""The shape of every projection's eigenvalue spectrum (ESD), as WeightWatcher models it.

From the eigenvalues λ = σ² the battery already computes (terrain/measures/esd, no second
decomposition):

- `esd_alpha`: the power-law exponent α of the spectrum's tail, by continuous maximum
  likelihood with xmin at the smallest Kolmogorov–Smirnov distance (Clauset, Shalizi and
  Newman 2009), per projection matrix, with xmin, D, the tail size and α's standard error
  in the details. WeightWatcher's heuristic (2 ≤ α ≤ 6 well trained, α < 2 over-fit,
  α > 6 under-trained) is not asserted: a user opts in with `band: [2, 6]` in models.yaml.
- `esd_spikes`: the share of projection matrices with eigenvalues above the
  Marchenko–Pastur bulk edge λ+ plus the Tracy–Widom margin (0.999 quantile), the bulk's
  variance fitted to the middle of the spectrum. An i.i.d. random-init matrix has none
  but for a small false rate (asserted there, `random_init_spikes`); training puts spikes
  above the bulk.
- `esd_correlation_traps`: the share of projection matrices whose seeded entry-shuffled
  copy has λ_max above its Marchenko–Pastur edge v(√N + √M)² (v the entries' variance)
  plus the Tracy–Widom margin: WeightWatcher's correlation traps, made by the entries'
  law (a few huge entries, a heavy tail, a non-zero mean), not their arrangement. An
  i.i.d. random-init matrix has none but for a small false rate (asserted there, the
  band of `esd_spikes`); the seed of each tensor's shuffle is in the details.

All are gauge-dependent, as the spectra of single projections are (terrain/checks/spectra).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
from scipy.stats import binom

from terrain.checks import kit
from terrain.checks.spectra import SPECTRA, projections
from terrain.measures.esd import OK, EsdShapeRows
from terrain.measures.spectra import RoleSpectra
from terrain.report.battery_plots import layer_curves

if TYPE_CHECKING:
    from terrain.model import LoadedModel

SOURCE = (
    "WeightWatcher's ESD model (Martin and Mahoney); Clauset, Shalizi and Newman 2009 for "
    "the power-law fit"
)
# Tracy–Widom's 0.999 margin gives one false spike per 1000 i.i.d. matrices asymptotically;
# the fitted bulk variance and the small matrices of replicas (n = 32) raise that, so the
# random-init band allows a per-matrix rate of 1 %: at most the 0.999 quantile of
# Binomial(N, 0.01) of N matrices (2 of 12, 5 of 100, 8 of 224).
FALSE_SPIKE_RATE = 0.01
RANDOM_INIT_SOURCE = (
    "Marchenko–Pastur + Tracy–Widom (0.999) at random init: at most the 0.999 quantile of "
    f"Binomial(N, {FALSE_SPIKE_RATE}) matrices"
)


# A large model's nulls keep the spectra of matrices up to NULL_SPECTRA_MAX_N wide only.
NO_SAMPLED_NULL = (
    "no sampled null: the nulls of a model this large leave projections wider than their "
    "spectra limit to Marchenko–Pastur, which has no power-law tail to fit and, by the "
    "edge + Tracy–Widom rule, no spikes but for its false rate"
)


NO_SAMPLED_TRAPS = (
    "no sampled null: the nulls of a model this large leave projections wider than their "
    "spectra limit to Marchenko–Pastur, by which a shuffled i.i.d. matrix has no trap but "
    "for the Tracy–Widom false rate"
)


def random_init_spikes(n_matrices: int) -> kit.Expected:
    allowed = float(binom.ppf(0.999, n_matrices, FALSE_SPIKE_RATE))
    return kit.Expected(0.0, allowed / n_matrices, RANDOM_INIT_SOURCE)


def _shaped(result: kit.BatteryResult) -> list[tuple[RoleSpectra, EsdShapeRows]]:
    return [(s, s.esd) for s in projections(result) if s.esd is not None]


def _measured(model: LoadedModel) -> list[tuple[RoleSpectra, EsdShapeRows]]:
    shaped = _shaped(model.battery())
    if not shaped:
        raise kit.NotApplicableError(f"model {model.name!r} has no projection matrices")
    return shaped


def _alphas(shaped: list[tuple[RoleSpectra, EsdShapeRows]]) -> np.ndarray:
    if not shaped:  # a large model's nulls leave wide spectra to Marchenko–Pastur
        return np.empty(0, dtype=np.float64)
    values = np.concatenate([e.power_law.alpha for _, e in shaped])
    return np.asarray(values[np.isfinite(values)], dtype=np.float64)


def _median_alpha(result: kit.BatteryResult) -> float | None:
    alphas = _alphas(_shaped(result))
    return float(np.median(alphas)) if alphas.size else None


def _spike_share(result: kit.BatteryResult) -> float | None:
    shaped = _shaped(result)
    if not shaped:
        return None
    spiked = np.concatenate([e.bulk.n_spikes > 0 for _, e in shaped])
    return float(spiked.mean())


def alpha(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    shaped = _measured(model)
    alphas = _alphas(shaped)
    if not alphas.size:
        raise kit.NotApplicableError(
            f"model {model.name!r}: no projection's spectrum has a tail to fit "
            f"({sorted(set(st for _, e in shaped for st in e.power_law.status))})"
        )
    null_shaped = _shaped(model.null_batteries()[0])
    finding = kit.finding(
        model,
        "esd_alpha",
        statistic="median over projection matrices of the power-law tail exponent α",
        value=float(np.median(alphas)),
        expected=kit.band(expect, None),
        null=(null := kit.null_of(model, _median_alpha)),
        n=int(alphas.size),
        details={
            "roles": {
                s.label: {"layers": list(s.layers), **e.power_law.as_dict()} for s, e in shaped
            },
            "share_in_2_to_6": float(np.mean((alphas >= 2) & (alphas <= 6))),
            **({"null_note": NO_SAMPLED_NULL} if null is None else {}),
        },
        tracked={f"{s.label} median_alpha": _finite_median(e.power_law.alpha) for s, e in shaped},
    )
    plot = partial(
        layer_curves,
        {s.label: (s.layers, list(e.power_law.alpha)) for s, e in shaped},
        {s.label: (s.layers, list(e.power_law.alpha)) for s, e in null_shaped},
        ylabel="power-law α",
        title=f"{model.name}: tail exponent α per layer",
    )
    return kit.Evaluation(finding, (kit.Evidence("α per layer against the null", plot),))


def spikes(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    shaped = _measured(model)
    share = _spike_share(model.battery())
    assert share is not None  # _measured found projections
    n = sum(len(e) for _, e in shaped)
    default = random_init_spikes(n) if model.random_init else None
    finding = kit.finding(
        model,
        "esd_spikes",
        statistic="share of projection matrices with eigenvalues above the MP edge + TW margin",
        value=share,
        expected=kit.band(expect, default),
        null=(null := kit.null_of(model, _spike_share)),
        n=n,
        details={
            "roles": {s.label: {"layers": list(s.layers), **_bulk_dict(e)} for s, e in shaped},
            **({"null_note": NO_SAMPLED_NULL} if null is None else {}),
        },
        tracked={f"{s.label} spikes": float(np.sum(e.bulk.n_spikes)) for s, e in shaped},
    )
    return kit.Evaluation(finding)


def _trap_share(result: kit.BatteryResult) -> float | None:
    traps = [t for r in result.traps.values() for t in r.traps if t.status == OK]
    return float(np.mean([t.is_trap for t in traps])) if traps else None


def correlation_traps(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    battery = model.battery()
    share = _trap_share(battery)
    if share is None:
        raise kit.NotApplicableError(f"model {model.name!r} has no projection to shuffle")
    roles = list(battery.traps.values())
    n = sum(t.status == OK for r in roles for t in r.traps)
    finding = kit.finding(
        model,
        "esd_correlation_traps",
        statistic="share of projections whose entry-shuffled copy rises above the MP edge + TW",
        value=share,
        expected=kit.band(expect, random_init_spikes(n) if model.random_init else None),
        null=(null := kit.null_of(model, _trap_share)),
        n=n,
        details={
            "roles": {r.label: r.as_dict() for r in roles},
            "sampled": dict(battery.traps_sampled),
            **({"null_note": NO_SAMPLED_TRAPS} if null is None else {}),
        },
        tracked={f"{r.label} traps": float(r.count()) for r in roles},
    )
    return kit.Evaluation(finding)


def _bulk_dict(esd: EsdShapeRows) -> dict[str, list[float | int]]:
    b = esd.bulk
    return {
        "n_spikes": [int(x) for x in b.n_spikes],
        "spike_mass_share": [float(x) for x in b.spike_mass_share],
        "edge_ratio": [float(x) for x in b.edge_ratio],
    }


def _finite_median(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else float("nan")


# The spectra's theme (the same projections: gauge, its note, kind), with its own source.
ESD = replace(SPECTRA, source=SOURCE, tolerance=kit.Tolerance(abs=0.05))
ESD.declare(
    "esd_alpha",
    "median over projections of the power-law tail exponent α (MLE, xmin by KS)",
    "the tail exponent α of every projection's eigenvalue spectrum, beside the null "
    "(measured; WeightWatcher's 2–6 heuristic is a band to opt into)",
    alpha,
    kit.NONNEGATIVE,
)
ESD.declare(
    "esd_spikes",
    "share of projections with eigenvalues above the Marchenko–Pastur edge + Tracy–Widom",
    "spikes above the Marchenko–Pastur bulk: none at random init (asserted there), the "
    "trained structure elsewhere",
    spikes,
    kit.FRACTION,
)
ESD.declare(
    "esd_correlation_traps",
    "share of projections whose entry-shuffled copy has λ_max above the MP edge + TW",
    "correlation traps (WeightWatcher's randomised ESD): none at random init (asserted "
    "there), made by the entries' law elsewhere; each shuffle seeded from the tensor's name",
    correlation_traps,
    kit.FRACTION,
)
