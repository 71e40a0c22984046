"""What the progress display shows: the latest event of each model's running work, as text.

One bar per (source, model): a model's trackers follow one another (battery pass, null
seeds, forward windows), and `--dist loadgroup` keeps a model on one worker. The text is
tqdm's `format_meter` (counts, percentage, bar, elapsed, time left, rate), fed with the
worker's own figures: the rate is units done over the worker's elapsed time, and the
elapsed time runs on between events, so a pass that is slow to report still shows that
the run is alive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tqdm import tqdm  # type: ignore[import-untyped]

from terrain.progress import ProgressEvent

MAIN = "main"  # the source of events of a run without xdist


@dataclass(frozen=True)
class Bar:
    source: str  # the xdist worker id, or MAIN
    event: ProgressEvent
    received: float  # the board's clock when the event arrived

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.event.model)

    @property
    def label(self) -> str:
        return f"{self.event.model} · {self.event.stage}"

    def text(
        self, now: float, width: int | None, *, label_width: int = 0, ascii_only: bool = False
    ) -> str:
        """The bar as one line of at most `width` columns (None: counts only, no meter),
        its label right-aligned in `label_width` so that the bars of a frame line up."""
        event = self.event
        elapsed = event.elapsed if event.finished else event.elapsed + max(0.0, now - self.received)
        rate = event.done / event.elapsed if event.done > 0 and event.elapsed > 0 else None
        in_bytes = event.unit == "B"
        text = tqdm.format_meter(
            _number(event.done),
            None if event.total is None else _number(event.total),
            elapsed,
            ncols=0 if width is None else width,
            prefix=self.label.rjust(label_width),
            ascii=ascii_only,
            unit=event.unit,
            unit_scale=in_bytes,
            unit_divisor=1024,
            rate=rate,
        )
        return str(text)


def _number(value: float) -> float | int:
    """Whole counts print as 12/32, not 12.0/32.0."""
    return int(value) if float(value).is_integer() else value


class Board:
    """The bars now running. Thread-safe: without xdist, trackers update it from the
    threads that do the work while the display thread reads it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._bars: dict[tuple[str, str], Bar] = {}

    def update(self, event: ProgressEvent, source: str = MAIN) -> None:
        bar = Bar(source, event, self.clock())
        with self._lock:
            self._bars[bar.key] = bar

    def forget(self, source: str) -> None:
        """Drop the running bars of a source whose test ended (or whose worker went down):
        work that was never closed must not look alive. Finished bars stay to be shown."""
        with self._lock:
            for key, bar in list(self._bars.items()):
                if key[0] == source and not bar.event.finished:
                    del self._bars[key]

    def take(self) -> list[Bar]:
        """The bars to show now, by model; finished ones are shown this once, then dropped."""
        with self._lock:
            bars = sorted(self._bars.values(), key=lambda b: (b.event.model, b.source))
            for bar in bars:
                if bar.event.finished:
                    del self._bars[bar.key]
        return bars
