"""pytest's terminal output and the progress display, on one terminal without garbling.

Every byte pytest's terminal writer sends (the header, xdist's status line and progress
dots, the per-finding lines, the summary) goes through `SharedTerminal.write`, which
stands in for the writer's file. pytest's writes and the display's draws then happen one
at a time, under one lock, and each side knows where the other left the cursor:

- live (a terminal): the bars are drawn on the lines *below* pytest's current line, and
  the cursor is put back where pytest left it (`ESC[nA` up, `CR`, `ESC[nC` right). Before
  any pytest write the bars are erased with `ESC[J` (erase to the end of the screen) from
  that same spot, so pytest writes onto exactly the screen it would have had; after it,
  they are drawn again. pytest's unfinished line (xdist's dots) stays as it is, and only
  relative moves are used, so scrolling at the bottom of the screen changes nothing.
- lines (not a terminal, `--terrain-progress on`): complete lines only, written on a line
  of their own; pytest's unfinished line is written again after them, so it goes on
  where it was.

The display writes to a duplicate of the descriptor under pytest's writer, taken before
any test runs: without xdist the work runs inside a test, while pytest's capture has
pointed descriptor 1 at a temporary file; the duplicate still reaches the terminal.
"""

from __future__ import annotations

import io
import os
import threading
from typing import TYPE_CHECKING, Any, TextIO, cast

from tqdm.utils import disp_len  # type: ignore[import-untyped]

if TYPE_CHECKING:
    from _pytest._io import TerminalWriter

ERASE_BELOW = "\x1b[J"


class SharedTerminal:
    """Stands in for the file of pytest's `TerminalWriter` until `close`."""

    def __init__(self, writer: TerminalWriter) -> None:
        self._writer = writer
        self._file: TextIO = writer._file
        self._out = _duplicate(self._file)
        self._lock = threading.RLock()
        self._line = ""  # pytest's unfinished line, as written (markup included)
        self._frame: list[str] = []  # the bars to keep on screen (live)
        self._drawn = 0  # how many lines of bars are on screen below pytest's line
        self._paused = False
        self._closed = False
        self._broken = False  # the display's writes failed: it stays off the screen
        self._own_write = False  # log() is writing through pytest's writer
        writer._file = cast(TextIO, self)
        self.ascii_only = not _encodes(self._out, "█·")

    # -- the file protocol, for pytest's writer ------------------------------------------
    def write(self, text: str) -> int:
        with self._lock:
            if self._own_write:
                self._line = _after_last_break(self._line, text)
                self._emit(text)
                return len(text)
            self._erase()
            written = self._file.write(text)
            self._file.flush()
            self._line = _after_last_break(self._line, text)
            self._draw()
            return written

    def flush(self) -> None:
        with self._lock:
            self._file.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...
        return getattr(self._file, name)

    # -- the display's side --------------------------------------------------------------
    @property
    def width(self) -> int:
        """Columns of the terminal (pytest's figure where the terminal tells none)."""
        return self._size()[0] or self._writer.fullwidth

    @property
    def height(self) -> int:
        return self._size()[1] or 24

    def _size(self) -> tuple[int, int]:
        """Read from the duplicate: without xdist, descriptor 1 is captured during tests."""
        try:
            size = os.get_terminal_size(self._out.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            return (0, 0)
        return (size.columns, size.lines)

    def show(self, frame: list[str]) -> None:
        """Keep `frame` (lines narrower than the terminal) below pytest's line (live)."""
        with self._lock:
            if frame == self._frame and self._drawn == len(frame):
                return
            self._erase()
            self._frame = frame
            self._draw()

    def log(self, lines: list[str]) -> None:
        """Write complete lines (lines mode), each on a line of its own.

        They go through pytest's writer, as a plugin's `write_line` would, so that its
        idea of the current line (where xdist's dots and the `[ 50%]` column go) stays
        true; only their bytes take the duplicate descriptor.
        """
        if not lines:
            return
        with self._lock:
            if self._closed or self._broken:
                return
            self._file.flush()
            self._own_write = True
            try:
                if self._line:
                    self._writer.write("\n")
                for line in lines:
                    self._writer.line(line)
            finally:
                self._own_write = False

    def pause(self) -> None:
        """Take the bars off the screen until `resume` (a debugger has the terminal)."""
        with self._lock:
            self._erase()
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._paused = False
            self._draw()

    def close(self) -> None:
        """Erase the bars and give pytest's writer its file back."""
        with self._lock:
            if self._closed:
                return
            self._erase()
            self._frame = []
            self._closed = True
            self._writer._file = self._file
            if self._out is not self._file:
                self._out.close()

    # -- drawing ------------------------------------------------------------------------
    def _erase(self) -> None:
        if self._drawn and not self._broken:
            self._drawn = 0
            self._emit(ERASE_BELOW)

    def _draw(self) -> None:
        if not self._frame or self._paused or self._closed or self._broken or self._drawn:
            return
        column = disp_len(self._line)
        if column >= self.width:  # pytest's line wrapped: where it ends is not known
            return
        back = "\r" + (f"\x1b[{column}C" if column else "")
        lines = len(self._frame)
        self._emit(ERASE_BELOW + "\n" + "\n".join(self._frame) + f"\x1b[{lines}A" + back)
        self._drawn = lines

    def _emit(self, text: str) -> None:
        try:
            self._out.write(text)
            self._out.flush()
        except (OSError, ValueError):  # the terminal went away: stop drawing
            self._broken = True


def _after_last_break(line: str, text: str) -> str:
    """What is on pytest's current line after `text` was written at the end of `line`."""
    cut = max(text.rfind("\n"), text.rfind("\r"))
    return line + text if cut < 0 else text[cut + 1 :]


def _duplicate(file: TextIO) -> TextIO:
    try:
        fd = os.dup(file.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return file  # no descriptor (an in-process run): draw through the file itself
    encoding = getattr(file, "encoding", None) or "utf-8"
    return open(fd, "w", encoding=encoding, errors="replace", closefd=True)


def _encodes(file: TextIO, text: str) -> bool:
    try:
        text.encode(getattr(file, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True
