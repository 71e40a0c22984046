"""What every check module works with, in one namespace: `from terrain.checks import kit`,
then `kit.Property(...)`, `kit.finding(model, name, ...)`.

It gathers the declaration types and value domains (terrain.property), a finding's parts
(terrain.findings), the baseline tolerance, the battery's result and the evidence, and
holds what the checks share: the null from the model's random-init seeds, the band, and
a theme's common declaration fields (`Theme`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from terrain.baselines import Tolerance
from terrain.battery import BatteryResult
from terrain.bootstrap import Interval
from terrain.findings import Expected, Finding, Null
from terrain.property import (
    COSINE,
    FRACTION,
    NONNEGATIVE,
    REAL,
    Domain,
    Evaluate,
    Evaluation,
    Expectation,
    Gauge,
    Kind,
    NotApplicableError,
    Property,
    declarations,
    declare,
)
from terrain.report.evidence import Evidence

if TYPE_CHECKING:
    from terrain.model import LoadedModel

__all__ = [
    "COSINE",
    "FRACTION",
    "NONNEGATIVE",
    "REAL",
    "BatteryResult",
    "Domain",
    "Evaluate",
    "Evaluation",
    "Evidence",
    "Expectation",
    "Expected",
    "Finding",
    "Gauge",
    "NotApplicableError",
    "Null",
    "Property",
    "Theme",
    "Tolerance",
    "band",
    "declare",
    "finding",
    "null_of",
]


def finding(
    model: LoadedModel,
    prop: str,
    *,
    value: float,
    expected: Expected | None,
    null: Null | None,
    statistic: str | None = None,
    interval: Interval | None = None,
    n: int | None = None,
    seed: int | None = None,
    details: dict[str, Any] | None = None,
    tracked: dict[str, float] | None = None,
) -> Finding:
    """The finding of the declared property `prop` on `model`: the model's name and
    random-init label from the model, the statistic from the declaration unless the check
    words it for this model (naming its worst role, its sample)."""
    return Finding(
        model=model.name,
        property=prop,
        statistic=declarations().get(prop).statistic if statistic is None else statistic,
        value=value,
        expected=expected,
        null=null,
        interval=interval,
        n=n,
        seed=seed,
        random_init=model.random_init,
        details={} if details is None else details,
        tracked={} if tracked is None else tracked,
    )


def null_of(model: LoadedModel, statistic: Callable[[BatteryResult], float | None]) -> Null | None:
    """The statistic on every null seed's battery (None where a seed has nothing to measure,
    and no null at all when none has)."""
    values = [statistic(b) for b in model.null_batteries()]
    kept = [v for v in values if v is not None]
    if not kept:
        return None
    return Null.of(kept, model.null_description())


def band(expect: Expectation | None, default: Expected | None = None) -> Expected | None:
    """The models file's band for this property, else the check's own (or none)."""
    if expect is not None and expect.band is not None:
        return Expected(expect.band.low, expect.band.high, expect.source)
    return default


@dataclass(frozen=True)
class Theme:
    """The declaration fields that the properties of one theme share: where their claims
    come from, their baseline tolerance, gauge (with its note), kind and version."""

    source: str
    tolerance: Tolerance
    gauge: Gauge
    kind: Kind
    gauge_note: str = ""
    version: int = 1
    compared_with_baselines: bool = True

    def declare(
        self,
        name: str,
        statistic: str,
        claim: str,
        evaluate: Evaluate,
        domain: Domain,
        expect: type[Expectation] = Expectation,
        *,
        source: str | None = None,
        tolerance: Tolerance | None = None,
        gauge_note: str | None = None,
    ) -> Property:
        """Declare one property of the theme (`expect`: its models-file schema; `source`,
        `tolerance`, `gauge_note`: the property's own, where they are not the theme's)."""
        return declare(
            Property(
                name=name,
                statistic=statistic,
                claim=claim,
                source=self.source if source is None else source,
                version=self.version,
                tolerance=self.tolerance if tolerance is None else tolerance,
                domain=domain,
                gauge=self.gauge,
                gauge_note=self.gauge_note if gauge_note is None else gauge_note,
                kind=self.kind,
                evaluate=evaluate,
                expect=expect,
                compared_with_baselines=self.compared_with_baselines,
            )
        )
