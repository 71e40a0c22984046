"""Progress of long work, reported by the library and shown by whoever listens.

The library never prints. Long loops (a streaming pass over a checkpoint, forward windows,
null seeds) hold a `Tracker` and advance it; the tracker sends `ProgressEvent`s to the
sink the caller installed with `install` (the pytest plugin shows them on the
controller). With no sink installed, nothing is sent and a tracker costs a clock read
per call. Events are rate-limited at the source, so a sink sees a few per second at most.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

# Least seconds between two events of one tracker (its first and last are always sent).
MIN_INTERVAL = 0.5


@dataclass(frozen=True)
class ProgressEvent:
    """Where one piece of work stands: `done` of `total` units (total None: unknown)."""

    model: str
    stage: str  # e.g. "battery: spectra", "null battery (seed 2)", "forward windows"
    done: float
    total: float | None
    unit: str  # "B" for bytes, else a plural noun ("blocks", "tensors", "seeds")
    elapsed: float  # seconds since the tracker started
    finished: bool = False

    @property
    def fraction(self) -> float | None:
        if self.total is None or self.total <= 0:
            return None
        return min(1.0, self.done / self.total)

    def as_record(self) -> dict[str, object]:
        return {
            "model": self.model,
            "stage": self.stage,
            "done": self.done,
            "total": self.total,
            "unit": self.unit,
            "elapsed": self.elapsed,
            "finished": self.finished,
        }

    @staticmethod
    def from_record(record: dict[str, object]) -> ProgressEvent:
        total = record.get("total")
        return ProgressEvent(
            model=str(record["model"]),
            stage=str(record["stage"]),
            done=float(record["done"]),  # type: ignore[arg-type]
            total=None if total is None else float(total),  # type: ignore[arg-type]
            unit=str(record["unit"]),
            elapsed=float(record["elapsed"]),  # type: ignore[arg-type]
            finished=bool(record.get("finished", False)),
        )


Sink = Callable[[ProgressEvent], None]
_lock = threading.Lock()
_sink: Sink | None = None


def install(sink: Sink | None) -> Sink | None:
    """Send every tracker's events to `sink` from now on (None: to nobody); returns the
    sink installed before, so a caller can restore it."""
    global _sink
    with _lock:
        previous, _sink = _sink, sink
    return previous


def _send(event: ProgressEvent) -> None:
    sink = _sink
    if sink is not None:
        sink(event)


class Tracker:
    """One piece of work of one model: advance it as units are done, close it at the end.

    Thread-safe: the battery's pool tasks may advance one tracker together.
    """

    def __init__(self, model: str, stage: str, total: float | None = None, unit: str = "B") -> None:
        self.model = model
        self.stage = stage
        self.total = total
        self.unit = unit
        self.done = 0.0
        self._start = time.monotonic()
        self._last = -MIN_INTERVAL
        self._closed = False
        self._lock = threading.Lock()
        self._emit(force=True)

    def advance(self, amount: float = 1.0, *, stage: str | None = None) -> None:
        """Count `amount` more units done (and, optionally, name the stage now running)."""
        with self._lock:
            self.done += amount
            changed = stage is not None and stage != self.stage
            if stage is not None:
                self.stage = stage
            self._emit(force=changed)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._emit(force=True, finished=True)

    def _emit(self, *, force: bool, finished: bool = False) -> None:
        if _sink is None:
            return
        now = time.monotonic()
        if not force and now - self._last < MIN_INTERVAL:
            return
        self._last = now
        elapsed = now - self._start
        _send(
            ProgressEvent(
                self.model, self.stage, self.done, self.total, self.unit, elapsed, finished
            )
        )

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
