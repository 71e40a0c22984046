"""Does a value differ from chance? One test per finding, and one correction per run.

A finding's null is either sampled (the same statistic on k random-init seeds of the
model's config) or analytic. Its test:

- sampled, k ≥ 2 seeds with a spread: the value is a new draw from the null's normal law
  of unknown mean and sd, so (value − mean) / (sd·√(1 + 1/k)) follows Student's t with
  k − 1 degrees of freedom (a prediction test; scipy.stats.t, two-sided). z is
  (value − mean) / sd. The empirical p-value (1 + #{seeds at least as far from the
  mean}) / (k + 1) is recorded beside it; with k = 5 it cannot go below 1/6, which is why
  the t test is the one corrected.
- sampled, no spread (every seed gives the same value, e.g. a count fixed by the config):
  not tested when the value equals it (nothing random to test); else the empirical
  p-value, the smallest k allows (1/(k + 1)).
- analytic, with an exact law of the statistic: the check computes the p-value from that
  law (e.g. the largest of m cosines) and hands it over in `Null.p_value`.
- nothing else is tested (a negative control, a single null seed): p is None and the
  finding makes no "differs from chance" claim.

The claims of one run are controlled together with Benjamini–Hochberg at q = 0.05
(scipy.stats.false_discovery_control); each tested finding gets its q-value and whether
it survives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

FDR_Q = 0.05
_SAME = 1e-12  # relative: a value this close to a spread-free null is that null


@dataclass(frozen=True)
class Significance:
    z: float | None  # (value − null mean) / null sd
    p: float | None  # two-sided, by `method`
    p_empirical: float | None  # rank of the value among the null's seeds
    method: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "z": self.z,
            "p": self.p,
            "p_empirical": self.p_empirical,
            "method": self.method,
        }


def _finite(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if math.isfinite(v)]


def empirical_p(value: float, samples: Sequence[float]) -> float:
    """(1 + #{|s − mean| ≥ |value − mean|}) / (k + 1): the value's two-sided rank."""
    mean = float(np.mean(samples))
    far = sum(abs(s - mean) >= abs(value - mean) for s in samples)
    return (1 + far) / (len(samples) + 1)


def against_null(
    value: float,
    samples: Sequence[float],
    *,
    analytic_p: float | None = None,
    analytic_method: str | None = None,
    analytic_sd: float | None = None,
    analytic_mean: float | None = None,
) -> Significance | None:
    """The test of `value` against its null (see the module docstring); None: no test."""
    if not math.isfinite(value):
        return None
    if analytic_p is not None:
        z = None
        if analytic_sd and analytic_mean is not None:
            z = (value - analytic_mean) / analytic_sd
        return Significance(z, float(analytic_p), None, analytic_method or "analytic law")
    kept = _finite(samples)
    if len(kept) < 2:
        return None
    k = len(kept)
    mean = float(np.mean(kept))
    sd = float(np.std(kept, ddof=1))
    p_emp = empirical_p(value, kept)
    if sd == 0.0 or sd <= _SAME * max(abs(mean), 1e-300):
        if abs(value - mean) <= _SAME * max(abs(mean), 1.0):
            # a value fixed by the config (every seed alike): nothing random to test
            return None
        return Significance(
            None, p_emp, p_emp, f"null without spread over {k} seeds: empirical rank"
        )
    z = (value - mean) / sd
    t = (value - mean) / (sd * math.sqrt(1.0 + 1.0 / k))
    p = float(2.0 * stats.t.sf(abs(t), df=k - 1))
    return Significance(z, p, p_emp, f"Student t prediction test, {k} null seeds (df {k - 1})")


def control_fdr(records: Sequence[Mapping[str, Any]], q: float = FDR_Q) -> dict[str, Any]:
    """Benjamini–Hochberg over every tested record (one with `significance.p`): the
    q-value of each, in the order of `records` (None where untested), and the counts."""
    tested = [i for i, r in enumerate(records) if _p(r) is not None]
    qvalues: list[float | None] = [None] * len(records)
    if tested:
        ps = np.array([_p(records[i]) for i in tested], dtype=np.float64)
        adjusted = stats.false_discovery_control(ps, method="bh")
        for i, value in zip(tested, adjusted, strict=True):
            qvalues[i] = float(value)
    survive = sum(1 for v in qvalues if v is not None and v <= q)
    return {
        "q": q,
        "method": "Benjamini-Hochberg (scipy.stats.false_discovery_control)",
        "tested": len(tested),
        "survive": survive,
        "qvalues": qvalues,
    }


def _p(record: Mapping[str, Any]) -> float | None:
    sig = record.get("significance")
    if not isinstance(sig, Mapping):
        return None
    p = sig.get("p")
    return float(p) if isinstance(p, int | float) and math.isfinite(p) else None
