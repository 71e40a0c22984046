"""What every check shares: its null from the model's random-init seeds, and its band."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from terrain.battery import BatteryResult
from terrain.findings import Expected, Null
from terrain.property import Expectation

if TYPE_CHECKING:
    from terrain.model import LoadedModel


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
