"""Progress display: shown per model with and without xdist, silent where pytest is, and
drawn on a terminal without changing what pytest's own output looks like there.

The end-to-end runs use a throw-away project whose only plugin is plugins.progress: two
tests, each a `Tracker` of one model advanced over about 1.5 s.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from _pytest._io import TerminalWriter

from plugins.progress_board import Bar, Board
from plugins.progress_display import MAX_BARS, Display
from plugins.progress_terminal import SharedTerminal
from plugins.progress_transport import TEST_FINISHED, LineSink, Tail, event_of
from terrain.progress import ProgressEvent
from tests.plugin.terminal_screen import Screen

REPO = Path(__file__).resolve().parents[2]
MODELS = ("tiny-a", "tiny-b")
NO_XDIST = ("-p", "no:xdist")
TWO_WORKERS = ("-n", "2")
WIDTH, HEIGHT = 100, 30

WORK = """
import glob, json, os, tempfile, time
from pathlib import Path

import pytest

from terrain.progress import Tracker

STEPS = int(os.environ.get("TINY_STEPS", "30"))


@pytest.mark.parametrize("model", ["tiny-a", "tiny-b"])
def test_stream(model):
    with Tracker(model, "battery: spectra", total=STEPS, unit="blocks") as tracker:
        for step in range(STEPS):
            time.sleep(0.05)
            tracker.advance()
            if step == 2:  # the per-run directories that exist while work runs
                pattern = os.path.join(tempfile.gettempdir(), "terrain-progress-*")
                seen = Path(__file__).with_name(f"seen-{model}.json")
                seen.write_text(json.dumps(sorted(glob.glob(pattern))))
"""


@dataclass
class Project:
    pytester: pytest.Pytester
    tmp: Path  # TMPDIR of the runs: the per-run directory goes here

    def run(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest_subprocess(*args, timeout=120)

    def seen(self) -> dict[str, list[str]]:
        """Per model, the directories its test saw (absent: the test did not get there)."""
        return {
            m: json.loads(p.read_text())
            for m in MODELS
            if (p := self.pytester.path / f"seen-{m}.json").exists()
        }

    def leftovers(self) -> list[str]:
        return sorted(os.listdir(self.tmp))

    def command(self, *args: str) -> list[str]:
        basetemp = self.pytester.path / "basetemp"  # not under TMPDIR
        return [sys.executable, "-m", "pytest", f"--basetemp={basetemp}", *args]

    def env(self) -> dict[str, str]:
        """The environment of a run started by hand (pytester's own runs add this path)."""
        return {**os.environ, "PYTHONPATH": f"{self.pytester.path}{os.pathsep}{REPO}"}

    def run_in_terminal(self, *args: str) -> str:
        """Everything the run wrote to a pseudo-terminal of WIDTH x HEIGHT."""
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", HEIGHT, WIDTH, 0, 0))
        proc = subprocess.Popen(
            self.command(*args),
            cwd=self.pytester.path,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=self.env(),
            start_new_session=True,
        )
        os.close(slave)
        chunks: list[bytes] = []
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                if not select.select([master], [], [], 1.0)[0]:
                    continue
                try:
                    data = os.read(master, 1 << 16)
                except OSError:  # EIO: the last writer closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            assert proc.wait(timeout=30) == 0, b"".join(chunks).decode(errors="replace")
        finally:
            if proc.poll() is None:
                proc.kill()
            os.close(master)
        return b"".join(chunks).decode("utf-8")


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    pytester.makeconftest('pytest_plugins = ["terrain.plugins.progress"]')
    pytester.makepyfile(test_work=WORK)
    pytester.makeini(
        "[pytest]\naddopts = -p no:cacheprovider -p no:terrain\nfilterwarnings = error\n"
    )
    tmp = pytester.mkdir("tmp")
    # The code under test is this checkout's, whatever the environment installed.
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setenv("PY_COLORS", "0")
    for name in ("COLUMNS", "LINES", "TINY_STEPS"):
        monkeypatch.delenv(name, raising=False)
    return Project(pytester, tmp)


# -- end to end --------------------------------------------------------------------------
@pytest.mark.parametrize("dist", [NO_XDIST, TWO_WORKERS], ids=["no-xdist", "n2"])
def test_on_shows_each_models_stage_and_counts(project: Project, dist: tuple[str, ...]) -> None:
    result = project.run("--terrain-progress", "on", *dist)
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    for model in MODELS:
        line = rf"^terrain progress: {model} · battery: spectra: "
        assert re.search(line + r" +0% 0/30 \[00:00<\?", out, re.MULTILINE), out
        assert re.search(line + r"100% 30/30 \[00:0\d<00:00, +[\d.]+blocks/s\]$", out, re.M), out
    seen = project.seen()
    if dist == TWO_WORKERS:  # both workers wrote into the one directory of the run
        assert len(seen["tiny-a"]) == 1
        assert seen["tiny-a"] == seen["tiny-b"]
    else:  # the sink feeds the display directly: no directory at all
        assert seen == {"tiny-a": [], "tiny-b": []}
    assert project.leftovers() == []


@pytest.mark.parametrize(
    "flags",
    [(), ("-q", "--terrain-progress", "on"), ("--terrain-progress", "off")],
    ids=["auto-no-terminal", "quiet", "off"],
)
def test_nothing_is_shown_off_a_terminal_in_quiet_runs_or_when_off(
    project: Project, flags: tuple[str, ...]
) -> None:
    result = project.run(*TWO_WORKERS, *flags)
    result.assert_outcomes(passed=2)
    assert "tiny-" not in result.stdout.str() + result.stderr.str()
    assert project.seen() == {"tiny-a": [], "tiny-b": []}  # workers were given no sink
    assert project.leftovers() == []


def _normalized(raw: str) -> list[str]:
    """The screen after `raw`, without the run's duration (and the padding it sets)."""
    lines = Screen(WIDTH).feed(raw).lines()
    return [re.sub(r"^=+ (.*) in [\d.]+s =+$", r"\1", line) for line in lines]


@pytest.mark.parametrize("dist", [NO_XDIST, TWO_WORKERS], ids=["no-xdist", "n2"])
def test_bars_on_a_terminal_leave_pytests_output_as_it_would_be(
    project: Project, dist: tuple[str, ...]
) -> None:
    shown = project.run_in_terminal(*dist)  # auto
    plain = project.run_in_terminal("--terrain-progress", "off", *dist)
    bar = r"battery: spectra: +\d+%\|.*\| \d+/30 \[00:0\d<00:0\d, +[\d.]+blocks/s\]"
    for model in MODELS:
        assert re.search(rf"{model} · {bar}", shown), shown
    assert "tiny-" not in plain
    assert "passed" in plain
    assert _normalized(shown) == _normalized(plain)
    assert project.leftovers() == []


def test_quiet_on_a_terminal_shows_nothing(project: Project) -> None:
    raw = project.run_in_terminal("-q", *TWO_WORKERS)
    assert "tiny-" not in raw
    assert "2 passed" in raw


def test_ctrl_c_ends_the_display_and_removes_the_directory(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINY_STEPS", "1200")  # a minute of work: interrupted long before
    proc = subprocess.Popen(
        project.command("-n", "2", "--terrain-progress", "on"),
        cwd=project.pytester.path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=project.env(),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(project.seen()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(project.seen()["tiny-a"]) == 1
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends to its foreground jobs
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    text = out.decode() + err.decode()
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, text
    assert "KeyboardInterrupt" in text
    assert "terrain-progress" not in text  # no thread died with a traceback
    assert project.leftovers() == []


# -- the parts ---------------------------------------------------------------------------
def _event(model: str = "m", done: float = 1, *, finished: bool = False) -> ProgressEvent:
    return ProgressEvent(model, "pass", done, 4, "blocks", 2.0, finished)


def test_tail_returns_complete_lines_once_and_skips_broken_ones(tmp_path: Path) -> None:
    tail = Tail(tmp_path)
    assert tail.read() == []
    path = tmp_path / "gw0.jsonl"
    record = json.dumps(_event().as_record())
    path.write_text(record + "\n" + "{not json\n" + record[:10])  # a line still being written
    assert [(s, event_of(r)) for s, r in tail.read()] == [("gw0", _event())]
    with path.open("a") as file:
        file.write(record[10:] + "\n")
    (tmp_path / "gw1.jsonl").write_text(json.dumps({TEST_FINISHED: "t.py::x"}) + "\n")
    read = tail.read()
    assert [(s, event_of(r)) for s, r in read] == [("gw0", _event()), ("gw1", None)]
    assert read[1][1] == {TEST_FINISHED: "t.py::x"}
    assert tail.read() == []
    tail.close()


def test_a_sink_from_many_threads_writes_whole_lines(tmp_path: Path) -> None:
    sink = LineSink(tmp_path / "gw0.jsonl")

    def send(model: str) -> None:
        for done in range(200):
            sink(_event(model, done))

    threads = [threading.Thread(target=send, args=(f"m{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sink.test_finished("t.py::x")
    sink.close()
    tail = Tail(tmp_path)
    records = tail.read()
    tail.close()
    assert len(records) == 801
    assert sum(event_of(r) is not None for _, r in records) == 800


def test_a_sink_without_its_directory_sends_nothing_and_raises_nothing(tmp_path: Path) -> None:
    sink = LineSink(tmp_path / "gone" / "gw0.jsonl")
    sink(_event())
    sink.close()
    assert not (tmp_path / "gone").exists()


def test_the_board_shows_finished_work_once_and_forgets_a_tests_running_work() -> None:
    now = [100.0]
    board = Board(clock=lambda: now[0])
    board.update(_event("a"), "gw0")
    board.update(_event("b", 4, finished=True), "gw0")
    board.update(_event("c"), "gw1")
    board.forget("gw0")  # the test on gw0 ended: a's unclosed work is not alive
    assert [b.event.model for b in board.take()] == ["b", "c"]
    assert [b.event.model for b in board.take()] == ["c"]
    now[0] += 3.0  # no event for 3 s: elapsed runs on, the rate is the worker's
    text = board.take()[0].text(now[0], 80)
    assert re.fullmatch(r"c · pass: +25%\|.*\| 1/4 \[00:05<00:06, +2\.00s/blocks\]", text)
    assert len(text) <= 80


def test_bytes_are_counted_in_binary_units() -> None:
    event = ProgressEvent("olmo-3-7b", "battery", 6 * 2**30, 14 * 2**30, "B", 192.0)
    board = Board(clock=lambda: 0.0)
    board.update(event)
    assert "43% 6.00G/14.0G [03:12<04:16, 33.6MB/s]" in board.take()[0].text(0.0, None)


def test_bars_sit_below_pytests_line_and_leave_no_trace() -> None:
    file = io.StringIO()
    writer = TerminalWriter(file)
    terminal = SharedTerminal(writer)
    writer.write("properties/test_battery.py ")
    terminal.show(["bar one", "bar two"])
    writer.write(".")
    assert Screen(WIDTH).feed(file.getvalue()).lines() == [
        "properties/test_battery.py .",
        "bar one",
        "bar two",
    ]
    writer.line(" [100%]")
    terminal.show(["bar one"])
    writer.write("terrain: m · q_sparsity = 0.93: pass")
    terminal.close()
    assert writer._file is file
    assert Screen(WIDTH).feed(file.getvalue()).lines() == [
        "properties/test_battery.py . [100%]",
        "terrain: m · q_sparsity = 0.93: pass",
    ]


def test_lines_keep_pytests_idea_of_its_current_line() -> None:
    file = io.StringIO()
    writer = TerminalWriter(file)
    terminal = SharedTerminal(writer)
    writer.write("test_x.py .")
    terminal.log(["terrain progress: m · pass"])
    assert writer.width_of_current_line == 0  # the next dot starts a line: [ 50%] aligns
    writer.write(".")
    terminal.close()
    assert file.getvalue() == "test_x.py .\nterrain progress: m · pass\n."


def test_lines_mode_writes_a_line_first_then_every_interval_and_at_the_end() -> None:
    now = [0.0]
    board = Board(clock=lambda: now[0])
    file = io.StringIO()
    display = Display(SharedTerminal(TerminalWriter(file)), board, live=False, log_every=10.0)
    board.update(_event("a", 1))
    display.tick()  # first seen: a line
    now[0] = 5.0
    board.update(_event("a", 2))
    display.tick()  # too soon
    now[0] = 10.0
    display.tick()  # due
    board.update(_event("a", 3, finished=True))
    display.tick()  # finished: a line, then gone
    display.tick()
    assert display.stop() is None
    counts = [re.findall(r" (\d)/4 ", line) for line in file.getvalue().splitlines()]
    assert counts == [["1"], ["2"], ["3"]]


def test_a_full_screen_of_bars_ends_with_how_many_more_run() -> None:
    board = Board(clock=lambda: 0.0)
    for i in range(12):
        board.update(_event(f"model-{i:02}"))
    display = Display(SharedTerminal(TerminalWriter(io.StringIO())), board, live=True)
    frame = display._frame(board.take())
    assert len(frame) == MAX_BARS
    assert frame[0].startswith("model-00 · pass:")
    assert frame[-1] == f"+{12 - MAX_BARS + 1} more running"


class _BrokenBoard(Board):
    def take(self) -> list[Bar]:
        raise RuntimeError("no frame")


def test_a_fault_in_the_display_ends_it_and_is_handed_to_the_caller() -> None:
    file = io.StringIO()
    writer = TerminalWriter(file)
    display = Display(SharedTerminal(writer), _BrokenBoard(), live=True, tick=0.01)
    display.start()
    time.sleep(0.2)
    error = display.stop()
    assert isinstance(error, RuntimeError)
    assert writer._file is file


def test_the_bars_of_a_frame_line_up() -> None:
    board = Board(clock=lambda: 0.0)
    board.update(_event("t5-small"))
    board.update(_event("olmo-3-7b-instruct"))
    display = Display(SharedTerminal(TerminalWriter(io.StringIO())), board, live=True)
    frame = display._frame(board.take())
    assert len({line.index("%|") for line in frame}) == 1


def test_a_debugger_gets_the_terminal_without_bars_until_it_leaves() -> None:
    file = io.StringIO()
    writer = TerminalWriter(file)
    terminal = SharedTerminal(writer)
    writer.write("test_x.py ")
    terminal.show(["bar"])
    terminal.pause()
    writer.line(">>>>> PDB set_trace >>>>>")
    terminal.show(["bar, later"])
    assert Screen(WIDTH).feed(file.getvalue()).lines() == ["test_x.py >>>>> PDB set_trace >>>>>"]
    terminal.resume()
    assert Screen(WIDTH).feed(file.getvalue()).lines()[-1] == "bar, later"
    terminal.close()
