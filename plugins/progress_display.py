"""The controller's display thread: reads the workers' events, draws the board.

One daemon thread, woken every `TICK` seconds: it takes what the workers appended (under
xdist), then either redraws the bars (live) or writes the lines that are due (lines).
Drawing never happens in the threads that do the work: without xdist a tracker's sink
only stores the event, so a slow terminal cannot slow a streaming pass down.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from .progress_board import Bar, Board
from .progress_terminal import SharedTerminal
from .progress_transport import TEST_FINISHED, Tail, event_of

TICK = 0.2  # seconds between two looks at the board
LOG_EVERY = 10.0  # lines mode: seconds between two lines of one model's running work
MAX_BARS = 8  # live: bars shown at most (and never more than the screen holds)


class Display:
    def __init__(
        self,
        terminal: SharedTerminal,
        board: Board,
        *,
        live: bool,
        tail: Tail | None = None,
        tick: float = TICK,
        log_every: float = LOG_EVERY,
    ) -> None:
        self.terminal = terminal
        self.board = board
        self.live = live
        self.tail = tail
        self.tick_seconds = tick
        self.log_every = log_every
        self.error: BaseException | None = None
        self._logged: dict[tuple[str, str], float] = {}  # lines mode: last line per bar
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="terrain-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> BaseException | None:
        """End the thread, write the last due lines (lines mode), clear the bars; returns
        the error that stopped the display early, if any."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5 * self.tick_seconds + 1.0)
        if not self.live and self.error is None and not self._thread.is_alive():
            self._guarded(self.tick)  # the workers' final events
        self.terminal.close()
        if self.tail is not None:
            self.tail.close()
        return self.error

    def _run(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            if not self._guarded(self.tick):
                return

    def _guarded(self, step: Callable[[], None]) -> bool:
        try:
            step()
        except Exception as e:  # a display fault must not stop the run it displays
            self.error = e
            with contextlib.suppress(Exception):
                self.terminal.show([])
            return False
        return True

    def tick(self) -> None:
        if self.tail is not None:
            for source, record in self.tail.read():
                event = event_of(record)
                if event is not None:
                    self.board.update(event, source)
                elif TEST_FINISHED in record:
                    self.board.forget(source)
        bars = self.board.take()
        if self.live:
            self.terminal.show(self._frame(bars))
        else:
            self.terminal.log(self._due_lines(bars))

    def _frame(self, bars: list[Bar]) -> list[str]:
        now = self.board.clock()
        width = max(1, self.terminal.width - 1)  # never the last column: no wrap
        room = max(1, min(MAX_BARS, self.terminal.height - 2))
        shown = bars if len(bars) <= room else bars[: room - 1]
        label = min(max((len(b.label) for b in shown), default=0), width // 2)
        lines = [
            b.text(now, width, label_width=label, ascii_only=self.terminal.ascii_only)
            for b in shown
        ]
        if len(shown) < len(bars):
            lines.append(f"+{len(bars) - len(shown)} more running"[:width])
        return lines

    def _due_lines(self, bars: list[Bar]) -> list[str]:
        """A line for work first seen, finished, or last written `log_every` ago."""
        now = self.board.clock()
        lines = []
        for bar in bars:
            last = self._logged.get(bar.key)
            if bar.event.finished or last is None or now - last >= self.log_every:
                lines.append("terrain progress: " + bar.text(now, None))
                self._logged[bar.key] = now
            if bar.event.finished:
                self._logged.pop(bar.key, None)
        return lines
