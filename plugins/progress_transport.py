"""Progress from xdist workers to the controller: JSON lines in a per-run directory.

pytest-xdist 3.8 has no channel for messages in the middle of a test: the controller's
`WorkerController.process_from_remote` raises `ValueError("unknown event: ...")` on any
event it does not know and takes that worker down, and its own events (test reports,
log start/finish) only travel between tests. A streaming pass over a 7B checkpoint is one
test of twenty minutes, so its progress needs a path of its own.

The controller creates a directory for the run and hands it to each worker in
`workerinput` (not an environment variable, which every subprocess a test starts would
inherit). Each worker appends one `ProgressEvent.as_record()` line per event to its own
file there; a controller thread reads what was appended since its last look. The files
are small (events are rate-limited at the source) and need nothing from xdist beyond
`workerinput`; a half-written last line is kept until its newline arrives; a worker
killed mid-write costs one bad line, which is skipped. The directory is local, so this
serves `popen` workers (those of `-n`): a worker that cannot open its file (a remote
`--tx`, a directory already removed at Ctrl-C) sends nothing and never fails a test.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import IO, TextIO

from terrain.progress import ProgressEvent

DIR_KEY = "terrain_progress_dir"  # the directory's path in node.workerinput
SUFFIX = ".jsonl"
TEST_FINISHED = "test_finished"  # record written after each test: its bars are over


class LineSink:
    """A worker's sink: one JSON line per event, appended to the worker's own file.

    Thread-safe (the battery's pool tasks may report together). Writing stops silently
    once the file cannot be written: the run is ending, and progress is no result.
    """

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._file: TextIO | None
        try:
            self._file = path.open("a", encoding="utf-8")
        except OSError:
            self._file = None

    def __call__(self, event: ProgressEvent) -> None:
        self._write(event.as_record())

    def test_finished(self, nodeid: str) -> None:
        """Tell the controller that the bars of this worker's last test are over."""
        self._write({TEST_FINISHED: nodeid})

    def _write(self, record: dict[str, object]) -> None:
        line = json.dumps(record) + "\n"
        with self._lock:
            if self._file is None:
                return
            try:
                self._file.write(line)
                self._file.flush()
            except (OSError, ValueError):  # removed, full, or closed under us
                self._file = None

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


Record = tuple[str, dict[str, object]]  # (source: the worker id, the decoded JSON object)


class Tail:
    """The controller's side: the complete lines appended to each worker's file since the
    last `read`, in order per file. Not thread-safe: one thread reads."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._files: dict[str, IO[bytes]] = {}
        self._pending: dict[str, bytes] = {}

    def read(self) -> list[Record]:
        self._open_new()
        records: list[Record] = []
        for source, file in self._files.items():
            chunk = file.read()
            if not chunk:
                continue
            *lines, self._pending[source] = (self._pending[source] + chunk).split(b"\n")
            records += [(source, r) for r in map(_decode, lines) if r is not None]
        return records

    def _open_new(self) -> None:
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return
        for entry in entries:
            source = entry.name.removesuffix(SUFFIX)
            if entry.name.endswith(SUFFIX) and source not in self._files:
                try:
                    self._files[source] = open(entry.path, "rb")  # noqa: SIM115 (kept open)
                except OSError:
                    continue
                self._pending[source] = b""

    def close(self) -> None:
        for file in self._files.values():
            file.close()
        self._files.clear()


def _decode(line: bytes) -> dict[str, object] | None:
    try:
        record = json.loads(line)
    except ValueError:  # a line cut short by a killed worker
        return None
    return record if isinstance(record, dict) else None


def event_of(record: dict[str, object]) -> ProgressEvent | None:
    """The event a record holds, or None for control records and malformed ones."""
    if "model" not in record:
        return None
    try:
        return ProgressEvent.from_record(record)
    except (KeyError, TypeError, ValueError):
        return None
