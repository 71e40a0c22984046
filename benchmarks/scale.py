"""The property suite on real-shape checkpoints of growing size: time and memory against size.

    python benchmarks/scale.py [--sizes bert-large qwen3-4b ...] [--config PATH ...]
        [-n 2] [--device cuda] [--timeout SECONDS] [--json rows.json] [--base-seed S]

Each size is a config of fixtures/configs (default: bert-large, qwen3_5-0_8b, qwen3-4b,
olmo-3-7b) or, with --config, any config file. Its checkpoint is built (or found in the
cache) by benchmarks/realshape.py in a process of its own, then the suite runs on it as a
user runs it on a release of their own:

    <venv>/bin/pytest properties -n 2 --model DIR --no-baselines -p no:cacheprovider \
        --findings TMP/findings.json [--device cuda] --durations=10

(--durations only adds the slowest tests to the output; --base-seed S adds
``--base-model BASE``, BASE the same size built with seed S, so that the delta properties
run too, at their full cost: an independent init changes every tensor). Without
--tokenizer the folders
have no tokenizer and the text properties report themselves not applicable, as for any
weights-only folder; --tokenizer DIR gives each size that folder's tokenizer (see
realshape.py). Per size it reports parameters,
bytes on disk, wall time, exit code, pass/fail/error counts, the peak anonymous memory
summed over pytest and all its descendants (RssAnon of every process of the tree, read from
/proc every 0.2 s: the memory the run allocated itself, not the page cache of the mmapped
weights, which the kernel can drop) and the slowest stage: from the per-stage "timings" the
findings' details carry when the harness records them, else the slowest test phase of
pytest's --durations. Then the growth exponents of wall time and peak memory against
parameters: the slopes of least-squares lines through (log parameters, log value).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
REALSHAPE = REPO / "benchmarks" / "realshape.py"
# realshape.DEFAULT_SIZES (not imported: this process stays free of torch; a test keeps
# the two equal).
DEFAULT_SIZES = ("bert-large", "qwen3_5-0_8b", "qwen3-4b", "olmo-3-7b")
SAMPLE_SECONDS = 0.2
# A run that outlives --timeout gets SIGTERM, then SIGKILL after this grace.
_KILL_GRACE_SECONDS = 10.0
_COUNT_KEYS = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")


class ScaleError(Exception):
    """A size that could not be prepared or measured."""


# --- the checkpoints ------------------------------------------------------------------------


def ensure_checkpoint(config: str, *, seed: int, dtype: str, tokenizer: Path | None = None) -> Path:
    """The checkpoint folder benchmarks/realshape.py builds or finds; it prints it last."""
    cmd = [sys.executable, str(REALSHAPE), config, "--seed", str(seed), "--dtype", dtype]
    if tokenizer is not None:
        cmd += ["--tokenizer", str(tokenizer)]
    # stderr passes through: the builder's progress bar and its summary line
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise ScaleError(f"{config}: building the checkpoint failed (exit {done.returncode})")
    folder = Path(lines[-1])
    if not (folder / "config.json").is_file():
        raise ScaleError(f"{config}: the builder printed {folder}, which has no config.json")
    return folder


def checkpoint_size(folder: Path) -> tuple[int, int]:
    """(parameters, bytes): values stored in the safetensors files (counted from their
    headers, nothing read), and the size of every file of the folder."""
    parameters = 0
    for path in sorted(folder.glob("*.safetensors")):
        parameters += _stored_values(path)
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    return parameters, size


def _stored_values(path: Path) -> int:
    try:
        with path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error) as e:
        raise ScaleError(f"{path}: not a readable safetensors header: {e}") from None
    return sum(math.prod(entry["shape"]) for key, entry in header.items() if key != "__metadata__")


# --- memory of a process tree ---------------------------------------------------------------


def children(pid: int) -> list[int]:
    """Direct children of `pid`: /proc/<pid>/task/*/children, or a scan of /proc where the
    kernel does not offer that file."""
    tasks = Path(f"/proc/{pid}/task")
    try:
        files = list(tasks.iterdir())
    except OSError:
        return []
    found: list[int] = []
    readable = False
    for task in files:
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
            readable = True
        except OSError:
            continue
    if readable:
        return found
    return [p for p, parent in _parents().items() if parent == pid]


def _parents() -> dict[int, int]:
    out: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name (field 2) may hold spaces and parentheses: split after the last ')'
        fields = stat[stat.rfind(")") + 2 :].split()
        out[int(entry.name)] = int(fields[1])
    return out


def process_tree(root: int) -> list[int]:
    seen: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        todo.extend(children(pid))
    return seen


def rss_anon_bytes(pid: int) -> int:
    """RssAnon of one process; 0 once it is gone (or a kernel thread, which has none)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^RssAnon:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


class TreeMemory:
    """Peak of the summed RssAnon of a process and its descendants, sampled in a thread."""

    def __init__(self, root: int, interval: float = SAMPLE_SECONDS) -> None:
        self._root = root
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-memory", daemon=True)
        self.peak = 0
        self.peak_processes = 0
        self.samples = 0

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        tree = process_tree(self._root)
        total = sum(rss_anon_bytes(p) for p in tree)
        self.samples += 1
        if total > self.peak:
            self.peak, self.peak_processes = total, len(tree)

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self._interval):
                return


# --- one run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    exit_code: int | None  # None: killed at the timeout
    wall_s: float
    peak_anon_bytes: int
    peak_processes: int
    samples: int


def run_measured(cmd: Sequence[str], log: Path, *, timeout: float | None, cwd: Path) -> Run:
    """Run `cmd` with its output in `log`, sampling the memory of its process tree.

    It leads a process group of its own so that a timeout ends the whole tree (xdist workers
    included), and only that tree.
    """
    with log.open("w", encoding="utf-8") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        with TreeMemory(proc.pid) as memory:
            code: int | None
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _end_group(proc)
                code = None
        wall = time.perf_counter() - start
    return Run(code, round(wall, 2), memory.peak, memory.peak_processes, memory.samples)


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the whole group (pytest can still report), then SIGKILL to whatever of it
    is left after the grace, leader or not."""
    _signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=_KILL_GRACE_SECONDS)
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
        os.killpg(pgid, sig)


def pytest_command(
    pytest: Path,
    folder: Path,
    findings: Path,
    *,
    workers: int,
    device: str | None,
    base: Path | None = None,
) -> list[str]:
    cmd = [str(pytest), "properties", "-n", str(workers), "--model", str(folder)]
    cmd += ["--no-baselines", "-p", "no:cacheprovider", "--findings", str(findings)]
    if device is not None:
        cmd += ["--device", device]
    if base is not None:
        cmd += ["--base-model", str(base)]
    return [*cmd, "--durations=10"]


# --- reading the outcome --------------------------------------------------------------------

_SUMMARY = re.compile(r"^=+ (?P<body>.*?) in [\d.]+s(?: \([^)]*\))? =+$", re.MULTILINE)
_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|warnings?|deselected)")
_DURATION = re.compile(
    r"^\s*(?P<s>\d+(?:\.\d+)?)s (?P<phase>setup|call|teardown)\s+(?P<test>\S.*)$"
)


def parse_counts(output: str) -> dict[str, int] | None:
    """Counts of pytest's final summary line; None when the run never printed one."""
    summaries = list(_SUMMARY.finditer(output))
    if not summaries:
        return None
    counts = dict.fromkeys(_COUNT_KEYS, 0)
    for number, kind in _COUNT.findall(summaries[-1].group("body")):
        kind = "error" if kind.startswith("error") else kind
        if kind in counts:
            counts[kind] = int(number)
    return counts


@dataclass(frozen=True)
class Stage:
    name: str
    seconds: float
    source: str  # "findings timings" or "pytest --durations"


def slowest_stage(findings: Path, output: str) -> Stage | None:
    return slowest_recorded_stage(findings) or slowest_test_phase(output)


def shorten(stage: Stage, folder: Path, label: str) -> Stage:
    """Test ids carry the model's path and, under --dist loadgroup, '@<group>': the size's
    name reads better."""
    name = re.sub(r"@\S*?(?= \(|$)", "", stage.name.replace(str(folder), label))
    return Stage(name, stage.seconds, stage.source)


def slowest_recorded_stage(findings: Path) -> Stage | None:
    """The longest entry of the "timings" mappings in the findings' details, if any."""
    try:
        data = json.loads(findings.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    records = data.get("findings") if isinstance(data, dict) else None
    best: Stage | None = None
    for record in records if isinstance(records, list) else []:
        details = record.get("details") if isinstance(record, dict) else None
        timings = details.get("timings") if isinstance(details, dict) else None
        if not isinstance(timings, Mapping):
            continue
        for stage, seconds in timings.items():
            if isinstance(seconds, int | float) and (best is None or seconds > best.seconds):
                label = f"{record.get('property', '?')}: {stage}"
                best = Stage(label, float(seconds), "findings timings")
    return best


def slowest_test_phase(output: str) -> Stage | None:
    """The first (longest) line of pytest's --durations section."""
    for line in output.splitlines():
        match = _DURATION.match(line)
        if match:
            name = f"{match.group('test').strip()} ({match.group('phase')})"
            return Stage(name, float(match.group("s")), "pytest --durations")
    return None


# --- a size, all sizes ----------------------------------------------------------------------


@dataclass
class Row:
    size: str
    folder: str | None = None
    parameters: int | None = None
    bytes: int | None = None
    wall_s: float | None = None
    exit_code: int | None = None
    timed_out: bool = False
    counts: dict[str, int] | None = None
    peak_anon_bytes: int | None = None
    peak_processes: int | None = None
    slowest_stage: dict[str, Any] | None = None
    error: str | None = None
    output_tail: list[str] = field(default_factory=list)


def measure_size(config: str, args: argparse.Namespace, work: Path) -> Row:
    label = Path(config).stem if config.endswith(".json") else config
    row = Row(size=label)
    try:
        folder = ensure_checkpoint(
            config, seed=args.seed, dtype=args.dtype, tokenizer=args.tokenizer
        )
    except ScaleError as e:
        row.error = str(e)
        return row
    base = None
    if args.base_seed is not None:
        try:
            base = ensure_checkpoint(config, seed=args.base_seed, dtype=args.dtype)
        except ScaleError as e:
            row.error = f"base model: {e}"
            return row
    row.folder = str(folder)
    row.parameters, row.bytes = checkpoint_size(folder)
    place = work / label
    place.mkdir(parents=True, exist_ok=True)
    findings, log = place / "findings.json", place / "pytest.log"
    cmd = pytest_command(
        args.pytest, folder, findings, workers=args.workers, device=args.device, base=base
    )
    print(f"[{label}] {' '.join(cmd)}", file=sys.stderr, flush=True)
    run = run_measured(cmd, log, timeout=args.timeout, cwd=REPO)
    output = log.read_text(encoding="utf-8", errors="replace")
    row.wall_s, row.exit_code, row.timed_out = run.wall_s, run.exit_code, run.exit_code is None
    row.peak_anon_bytes, row.peak_processes = run.peak_anon_bytes, run.peak_processes
    row.counts = parse_counts(output)
    stage = slowest_stage(findings, output)
    row.slowest_stage = asdict(shorten(stage, folder, label)) if stage else None
    if run.exit_code not in (0, 1):  # 1 is a property that failed: a result, not a breakdown
        row.output_tail = output.splitlines()[-15:]
    return row


def growth_exponent(points: Iterable[tuple[float, float]]) -> float | None:
    """Slope of the least-squares line through (log x, log y); None under two distinct x."""
    logs = [(math.log(x), math.log(y)) for x, y in points if x > 0 and y > 0]
    if len({lx for lx, _ in logs}) < 2:
        return None
    mx = sum(lx for lx, _ in logs) / len(logs)
    my = sum(ly for _, ly in logs) / len(logs)
    sxx = sum((lx - mx) ** 2 for lx, _ in logs)
    sxy = sum((lx - mx) * (ly - my) for lx, ly in logs)
    return sxy / sxx


def exponents(rows: Sequence[Row]) -> dict[str, Any]:
    """Fits over the sizes whose run finished (a run killed at the timeout has no time)."""
    done = [r for r in rows if r.error is None and not r.timed_out]
    wall = [(r.parameters, r.wall_s) for r in done if r.parameters and r.wall_s]
    memory = [(r.parameters, r.peak_anon_bytes) for r in done if r.parameters and r.peak_anon_bytes]
    return {
        "wall_s": growth_exponent((float(n), float(y)) for n, y in wall),
        "peak_anon_bytes": growth_exponent((float(n), float(y)) for n, y in memory),
        "sizes": [r.size for r in done if r.parameters and r.wall_s],
    }


# --- output ---------------------------------------------------------------------------------

_COLUMNS = (
    "size",
    "params",
    "on disk",
    "wall",
    "exit",
    "pass",
    "fail",
    "error",
    "skip",
    "peak anon",
)


def table(rows: Sequence[Row]) -> str:
    """One line per size, columns as wide as their widest cell; then each size's slowest
    stage, error or the end of a broken run's output."""
    grid = [list(_COLUMNS), *(_row_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in grid) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in grid
    ]
    lines.append("")
    for r in rows:
        if r.error:
            lines.append(f"{r.size}: {r.error}")
            continue
        stage = r.slowest_stage
        if stage:
            lines.append(
                f"{r.size}: slowest {stage['name']}: {stage['seconds']:.1f} s ({stage['source']})"
            )
        lines.extend(f"{r.size}|  {line}" for line in r.output_tail)
    return "\n".join(lines)


def _row_cells(r: Row) -> list[str]:
    counts = r.counts or {}
    return [
        r.size,
        _si(r.parameters, ""),
        _si(r.bytes, "B"),
        "-" if r.wall_s is None else f"{r.wall_s:.1f} s",
        "timeout" if r.timed_out else _text(r.exit_code),
        *(_text(counts.get(k)) for k in ("passed", "failed", "error", "skipped")),
        _si(r.peak_anon_bytes, "B"),
    ]


def _text(value: int | None) -> str:
    return "-" if value is None else str(value)


def _si(value: int | None, unit: str) -> str:
    if value is None:
        return "-"
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.2f} {prefix}{unit}".rstrip()
    return f"{value} {unit}".rstrip()


def describe_exponents(fit: Mapping[str, Any]) -> str:
    def show(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    if len(fit["sizes"]) < 2:
        return "growth exponents: need two sizes whose runs finished"
    return (
        f"growth against parameters (least squares on log-log over {len(fit['sizes'])} "
        f"sizes): wall time ∝ N^{show(fit['wall_s'])}, "
        f"peak anonymous memory ∝ N^{show(fit['peak_anon_bytes'])}"
    )


def write_json(path: Path, rows: Sequence[Row], fit: Mapping[str, Any]) -> None:
    payload = {"rows": [asdict(r) for r in rows], "growth_exponents": dict(fit)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- command line ---------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--sizes", nargs="*", default=None, help="fixtures/configs names")
    p.add_argument("--config", action="append", default=[], help="a config JSON (repeatable)")
    p.add_argument("-n", "--workers", type=int, default=2, help="pytest-xdist workers")
    p.add_argument("--device", default=None, help="passed to the suite (cpu, cuda, auto)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per size")
    p.add_argument("--json", type=Path, default=None, help="write the rows there")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--base-seed",
        type=int,
        default=None,
        help="also build each size with this seed and run the suite with it as --base-model "
        "(the delta properties against an independent init: every tensor changed)",
    )
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--tokenizer", type=Path, default=None, help="see realshape.py --tokenizer")
    p.add_argument("--pytest", type=Path, default=Path(sys.executable).with_name("pytest"))
    p.add_argument("--keep", type=Path, default=None, help="keep logs and findings there")
    args = p.parse_args(argv)
    if args.sizes is None:
        args.sizes = [] if args.config else list(DEFAULT_SIZES)
    if not args.pytest.is_file():
        p.error(f"--pytest: no pytest at {args.pytest} (give the venv's bin/pytest)")
    if args.timeout is not None and args.timeout <= 0:
        p.error("--timeout must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    configs = [*args.sizes, *args.config]
    work = args.keep or Path(tempfile.mkdtemp(prefix="terrain-scale-"))
    rows: list[Row] = []
    try:
        for config in configs:
            rows.append(measure_size(config, args, work))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    fit = exponents(rows)
    print(table(rows))
    print(describe_exponents(fit))
    if args.json is not None:
        write_json(args.json, rows, fit)
    return 0 if all(r.error is None and not r.timed_out for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
