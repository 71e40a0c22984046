"""A finding: one (model, property) measurement with its expectation, null and verdict.

Plain data only, so it can cross xdist's serializer and land in findings.json as is.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from terrain.bootstrap import Interval
from terrain.significance import Significance, against_null

Verdict = Literal["pass", "fail", "no-expectation"]
FINDINGS_SCHEMA_VERSION = 3  # 2: verdict status fail/incomplete, summary, kind; 3: tests


@dataclass(frozen=True)
class Expected:
    """What the value is compared to: a band [low, high] (either end may be open)."""

    low: float | None
    high: float | None
    source: str | None = None

    def contains(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"band [{self.low:.4g}, {self.high:.4g}]"
        if self.high is not None:
            return f"at most {self.high:.4g}"
        return f"at least {self.low:.4g}"


@dataclass(frozen=True)
class Null:
    """What chance gives: the same statistic on random-init nulls (the mean over seeds,
    their sd and every seed's value) or an analytic law (no samples)."""

    value: float
    kind: str  # e.g. "random-init replica", "analytic 1/sqrt(n)", "Gaussian points"
    sd: float | None = None  # over the null's seeds (None: analytic, or a single draw)
    samples: tuple[float, ...] = ()
    # An analytic null's exact p-value of the finding's value, and the law it comes from
    # (sampled nulls are tested in terrain.significance from their samples).
    p_value: float | None = None
    p_method: str | None = None

    @staticmethod
    def of(samples: Sequence[float], kind: str) -> Null:
        """The null of a statistic measured on each seed of a random-init null."""
        values = tuple(float(x) for x in samples)
        if not values:
            raise ValueError("a sampled null needs at least one seed")
        finite = [x for x in values if math.isfinite(x)]
        mean = sum(finite) / len(finite) if finite else math.nan
        sd = (
            math.sqrt(sum((x - mean) ** 2 for x in finite) / (len(finite) - 1))
            if len(finite) > 1
            else None
        )
        return Null(mean, kind, sd, values)


@dataclass(frozen=True)
class Finding:
    model: str
    property: str
    statistic: str  # what `value` is, in words
    value: float
    expected: Expected | None
    null: Null | None
    interval: Interval | None = None
    n: int | None = None
    seed: int | None = None
    random_init: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    # Extra values recorded in baselines beside `value` (e.g. per-role fractions).
    tracked: dict[str, float] = field(default_factory=dict)
    # Version of the measure's definition: bump it when the definition changes, so
    # baselines recorded under the old one are reported stale instead of compared.
    version: int = 1

    @builtins.property  # the field `property` shadows the builtin in this class body
    def verdict(self) -> Verdict:
        if self.expected is None:
            return "no-expectation"
        return "pass" if self.expected.contains(self.value) else "fail"

    def describe(self) -> str:
        """One line with everything a failure message must state."""
        parts = [
            f"model {self.model!r}",
            f"property {self.property!r}: {self.statistic} = {self.value:.4g}",
        ]
        if self.interval is not None:
            ci = self.interval
            parts.append(f"{ci.confidence:.0%} CI [{ci.low:.4g}, {ci.high:.4g}]")
        if self.n is not None:
            parts.append(f"N={self.n}")
        head = ", ".join(parts)
        if self.expected is None:
            expect = "no expectation in models.yaml"
        else:
            where = "inside" if self.verdict == "pass" else "outside"
            expect = f"{where} expected {self.expected.describe()}"
            if self.expected.source:
                expect += f" (source: {self.expected.source})"
        null = f"null {self.null.value:.4g} ({self.null.kind})" if self.null else "no null"
        label = " [random init]" if self.random_init else ""
        return f"{head}; {expect}; {null}{label}"

    def significance(self) -> Significance | None:
        """The test of the value against its null (None: the null makes no such claim)."""
        if self.null is None:
            return None
        return against_null(
            self.value,
            self.null.samples,
            analytic_p=self.null.p_value,
            analytic_method=self.null.p_method,
            analytic_sd=self.null.sd if not self.null.samples else None,
            analytic_mean=self.null.value,
        )

    def as_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["verdict"] = self.verdict
        sig = self.significance()
        record["significance"] = sig.as_dict() if sig is not None else None
        return record
