"""A tiny terminal: what a screen shows after some output, to tell intact from garbled.

It knows the few controls pytest and the progress display send (CR, LF, SGR colours,
cursor up and right, erase to end of line and of screen) and refuses any other escape,
so a new kind of control in the output fails the test that reads it instead of being
misread. The screen is unbounded below (scrolling is invisible to relative moves).
"""

from __future__ import annotations

import re

_CSI = re.compile(r"\x1b\[([0-9;]*)([A-Za-z])")


class Screen:
    def __init__(self, width: int) -> None:
        self.width = width
        self.rows: list[list[str]] = [[]]
        self.row = 0
        self.col = 0

    def feed(self, text: str) -> Screen:
        i = 0
        while i < len(text):
            char = text[i]
            if char == "\x1b":
                match = _CSI.match(text, i)
                if match is None:
                    raise AssertionError(f"unknown escape at {text[i : i + 12]!r}")
                self._control(match.group(1), match.group(2))
                i = match.end()
                continue
            if char == "\r":
                self.col = 0
            elif char == "\n":  # a terminal in its usual mode returns the carriage too
                self._down()
            elif char.isprintable():
                self._put(char)
            else:
                raise AssertionError(f"unknown control {char!r}")
            i += 1
        return self

    def _down(self) -> None:
        self.row += 1
        self.col = 0
        while len(self.rows) <= self.row:
            self.rows.append([])

    def _put(self, char: str) -> None:
        if self.col >= self.width:  # pending wrap: the next character starts a new line
            self._down()
        line = self.rows[self.row]
        line.extend(" " * (self.col + 1 - len(line)))
        line[self.col] = char
        self.col += 1

    def _control(self, params: str, final: str) -> None:
        count = int(params) if params.isdigit() else 1
        if final == "m":  # colours
            return
        if final == "A":
            self.row -= count
            if self.row < 0:
                raise AssertionError("cursor moved above the first line")
        elif final == "C":
            self.col = min(self.col + count, self.width - 1)
        elif final == "K" and params in ("", "0"):
            del self.rows[self.row][self.col :]
        elif final == "J" and params in ("", "0"):
            del self.rows[self.row][self.col :]
            del self.rows[self.row + 1 :]
        else:
            raise AssertionError(f"unknown control sequence ESC[{params}{final}")

    def lines(self) -> list[str]:
        """The screen's lines, trailing blanks trimmed."""
        lines = ["".join(row).rstrip() for row in self.rows]
        while lines and not lines[-1]:
            lines.pop()
        return lines
