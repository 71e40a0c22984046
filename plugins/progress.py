"""Shows that a long run is alive: per-model progress of the library's trackers.

`terrain.progress.Tracker`s report work as it goes (bytes of a streaming pass, blocks,
seeds). This plugin installs their sink and shows one bar per model on the controller:
stage, units done of the total, elapsed time, time left and rate (tqdm's meter).

- Without xdist the sink feeds the display directly (the sink only stores the event;
  the display thread draws).
- Under `-n` the work runs in the workers: each appends its events to a file in a
  directory the controller creates and passes in `workerinput`
  (plugins/progress_transport.py says why xdist's own channel cannot carry them), and the
  display thread reads them there.
- Drawing shares pytest's terminal writer without garbling it
  (plugins/progress_terminal.py).

`--terrain-progress auto` (the default) shows bars when the controller's stdout is a
terminal; `on` also when it is not, as a plain line per model every few seconds;
`off` never. A quiet run (`-q`) shows nothing, like pytest's own progress. Everything
stops at session end, also after Ctrl-C, and the directory is removed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import pytest

from terrain import progress

from .progress_board import MAIN, Board
from .progress_display import Display
from .progress_terminal import SharedTerminal
from .progress_transport import DIR_KEY, SUFFIX, LineSink, Tail

MODES = ("auto", "on", "off")
PREFIX = "terrain-progress-"  # the per-run directory, under the temporary directory
Style = Literal["live", "lines"]


_RUN = pytest.StashKey["ProgressRun"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("terrain").addoption(
        "--terrain-progress",
        choices=MODES,
        default="auto",
        help="progress of long work per model: auto (bars when stdout is a terminal), "
        "on (also when it is not: a line per model every few seconds), off; -q shows none",
    )


def style(config: pytest.Config) -> Style | None:
    """How the controller shows progress, if at all."""
    mode = config.getoption("terrain_progress")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if mode == "off" or reporter is None or config.get_verbosity() < 0:
        return None
    terminal = bool(reporter.isatty()) and os.environ.get("TERM") != "dumb"
    if not terminal:
        return "lines" if mode == "on" else None
    if config.getoption("capture") == "no" and not _distributed(config):
        return "lines"  # tests print onto the same terminal: bars below would be torn
    return "live"


def _distributed(config: pytest.Config) -> bool:
    return config.pluginmanager.get_plugin("dsession") is not None


@pytest.hookimpl(tryfirst=True)  # before xdist's sessionstart starts the workers
def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None:
        if workerinput.get(DIR_KEY):
            path = Path(workerinput[DIR_KEY]) / f"{workerinput['workerid']}{SUFFIX}"
            _start(config, ProgressRun(config, sink=LineSink(path)))
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    chosen = style(config)
    if chosen is None or reporter is None:
        return
    directory = None
    if _distributed(config):
        try:
            directory = Path(tempfile.mkdtemp(prefix=PREFIX))
        except OSError:  # no writable temporary directory: run without progress
            return
    display = Display(
        SharedTerminal(reporter._tw),
        Board(),
        live=chosen == "live",
        tail=Tail(directory) if directory else None,
    )
    _start(config, ProgressRun(config, display=display, directory=directory))


def _start(config: pytest.Config, run: ProgressRun) -> None:
    config.stash[_RUN] = run
    config.pluginmanager.register(run, "terrain-progress-run")
    run.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    """A session that never reached sessionfinish (an error in another plugin's start)."""
    run = config.stash.get(_RUN, None)
    if run is not None:
        run.finish()


class ProgressRun:
    """What this process set up (a worker's sink, or the controller's display and
    directory), so that the end of the session undoes exactly that, once."""

    def __init__(
        self,
        config: pytest.Config,
        *,
        sink: LineSink | None = None,
        display: Display | None = None,
        directory: Path | None = None,
    ) -> None:
        self.config = config
        self.sink = sink  # worker
        self.display = display  # controller
        self.directory = directory  # controller under xdist
        self._previous: progress.Sink | None = None
        self._installed = False
        self._finished = False

    def start(self) -> None:
        if self.sink is not None:
            self._install(self.sink)
        if self.display is not None:
            if self.directory is None:  # no xdist: this process does the work
                self._install(self.display.board.update)
            self.display.start()

    def _install(self, sink: progress.Sink) -> None:
        self._previous, self._installed = progress.install(sink), True

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """xdist, on the controller, before a worker starts: where it writes its events."""
        if self.directory is not None:
            node.workerinput[DIR_KEY] = str(self.directory)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        if self.display is not None:
            self.display.board.forget(node.gateway.id)

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        """A test's end ends its bars, also those of work that was never closed."""
        if self.sink is not None:
            self.sink.test_finished(nodeid)
        elif self.display is not None and self.directory is None:
            self.display.board.forget(MAIN)
            self.display.terminal.resume()  # a post-mortem debugger, if any, is done

    def pytest_enter_pdb(self) -> None:
        if self.display is not None:
            self.display.terminal.pause()

    def pytest_leave_pdb(self) -> None:
        if self.display is not None:
            self.display.terminal.resume()

    @pytest.hookimpl(trylast=True)  # after xdist's sessionfinish has taken the workers down
    def pytest_sessionfinish(self) -> None:
        self.finish()

    def finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self._installed:
            progress.install(self._previous)
        if self.sink is not None:
            self.sink.close()
        error = self.display.stop() if self.display is not None else None
        if self.directory is not None:
            _remove(self.directory)
        del self.config.stash[_RUN]
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if error is not None and reporter is not None:
            reporter.write_line(f"terrain: progress display stopped early: {error!r}")


def _remove(directory: Path) -> None:
    """A worker that was still starting at Ctrl-C may add its file while this runs."""
    for _ in range(5):
        shutil.rmtree(directory, ignore_errors=True)
        if not directory.exists():
            return
        time.sleep(0.1)
