"""Evidence attached to a finding: a titled plot for the report, drawn when it is read.

A check hands over how to draw its plot (`render`, e.g. a `functools.partial` of a
terrain.report.plots function), not the picture: drawing a PNG costs a few tenths of a
second, and a caller that only wants the value (the gauge contract, a library user, a
test) never pays for it. The report reads `png_base64`, which draws once and keeps it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Evidence:
    title: str
    render: Callable[[], str]  # draws the plot, as a base64 PNG

    @cached_property
    def png_base64(self) -> str:
        return self.render()
