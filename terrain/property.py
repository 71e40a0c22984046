"""One declaration per property: everything terrain knows about a property in one place.

A `Property` names the statistic, the claim and where it comes from, the definition's
version (bump it when the definition changes: baselines of another version are reported
stale), the default baseline tolerance, the domain of its values (which bands a models file
may give it), whether the measure describes the function or only the parametrisation
(`Gauge`), its expectation schema and the function that evaluates it on a model. The
models file's validation, the baselines, the report and the README's property table are
all made from these declarations, so a property added here appears everywhere.

Declarations live beside their statistics in terrain/checks/; importing that package
registers them. This module holds the types and the registry only (no measures, no
pytest), so that config validation can use it without importing any measure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from terrain.baselines import Tolerance
from terrain.errors import TerrainError
from terrain.findings import Finding
from terrain.report.evidence import Evidence
from terrain.suggest import did_you_mean, known

if TYPE_CHECKING:
    from terrain.model import LoadedModel

Kind = Literal["weights", "forward", "text"]


class Gauge(StrEnum):
    """How a measure behaves under the family's exact weight symmetries (terrain/symmetry):
    the function is unchanged by them, so only an invariant measure describes the function
    rather than the parametrisation."""

    INVARIANT = "gauge-invariant"
    COVARIANT = "gauge-covariant"  # changes in a stated way (gauge_note says how)
    DEPENDENT = "gauge-dependent"
    NONE = "not a weight measure"  # exactness claims of the forward, facts of the layout


@dataclass(frozen=True)
class Domain:
    """Where a property's values live; a band outside it can never be met."""

    name: str
    low: float | None = None
    high: float | None = None

    def problem(self, low: float, high: float) -> str | None:
        """Why [low, high] is no band for this domain (None when it is one)."""
        if not (math.isfinite(low) and math.isfinite(high)):
            return f"a band needs finite ends, got [{low}, {high}]"
        if low > high:
            return f"band low end {low} is above its high end {high}"
        if (self.low is not None and low < self.low) or (
            self.high is not None and high > self.high
        ):
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            return f"{self.name} lies in [{lo}, {hi}]; the band [{low:g}, {high:g}] leaves it"
        return None


FRACTION = Domain("a fraction", 0.0, 1.0)
COSINE = Domain("a cosine or correlation", -1.0, 1.0)
NONNEGATIVE = Domain("a non-negative quantity", 0.0, None)
REAL = Domain("a real number")


class Band(BaseModel):
    """A closed interval [low, high]; written in YAML as `[low, high]`."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    low: float
    high: float

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, data: Any) -> Any:
        if isinstance(data, list | tuple):
            if len(data) != 2:
                raise ValueError(f"a band is a list of two numbers [low, high], got {list(data)}")
            return {"low": data[0], "high": data[1]}
        return data

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def as_list(self) -> list[float]:
        return [self.low, self.high]


class Expectation(BaseModel):
    """What a models file may say of any property: a band its value must lie in, and where
    that band comes from. Properties with more to set subclass this."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    band: Band | None = None
    source: str | None = None


@dataclass(frozen=True)
class Evaluation:
    """A property's finding on one model, its evidence, and any failure beyond the band
    (a negative control that showed no effect)."""

    finding: Finding
    evidence: tuple[Evidence, ...] = ()
    problems: tuple[str, ...] = ()


class NotApplicableError(TerrainError):
    """The property does not apply to this architecture (the message says why)."""


Evaluate = Callable[["LoadedModel", Any], Evaluation]
# The `evaluate` fixture a property test receives: it runs one declared property by name.
PropertyCheck = Callable[[str], None]


@dataclass(frozen=True)
class Property:
    name: str
    statistic: str  # what the finding's value is, in words
    claim: str  # the claim tested, as the report states it
    source: str  # where the claim or its figure comes from
    version: int  # of the definition; bump on any change of what is computed
    tolerance: Tolerance  # default baseline tolerance
    domain: Domain
    gauge: Gauge
    kind: Kind
    evaluate: Evaluate
    expect: type[Expectation] = Expectation
    gauge_note: str = ""
    tags: tuple[str, ...] = field(default=())
    # False where a value belongs to more than the model (a delta against the base model
    # given on the command line): its band judges it, and no baseline of the model does.
    compared_with_baselines: bool = True
    # True where the value is accumulated in float32 (text encodings, the cross-layer
    # cosines' batched products): its last digits move with the CPU's GEMM blocking, about
    # 1e-7 to 1e-6 relative between two x86 machines, so only a larger move is a change.
    float32_arithmetic: bool = False

    def expectation(self, raw: Any) -> Expectation:
        """Validate one models-file entry for this property (pydantic errors propagate)."""
        return self.expect.model_validate(raw)


class Registry:
    """Property declarations by name; a duplicate name is refused."""

    def __init__(self) -> None:
        self._by_name: dict[str, Property] = {}

    def register(self, prop: Property) -> Property:
        if prop.name in self._by_name:
            raise ValueError(f"property {prop.name!r} is declared twice")
        self._by_name[prop.name] = prop
        return prop

    def get(self, name: str) -> Property:
        try:
            return self._by_name[name]
        except KeyError:
            raise TerrainError(
                f"unknown property {name!r}{did_you_mean(name, self._by_name)}; "
                f"known: {known(self._by_name)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Property]:
        return iter(sorted(self._by_name.values(), key=lambda p: p.name))

    def names(self) -> list[str]:
        return sorted(self._by_name)


PROPERTIES = Registry()


def declare(prop: Property) -> Property:
    """Register a property in the global registry (terrain/checks/ modules call this)."""
    return PROPERTIES.register(prop)


def declarations() -> Registry:
    """The registry with every shipped declaration loaded."""
    import terrain.checks  # noqa: F401  (registration side effect)

    return PROPERTIES
