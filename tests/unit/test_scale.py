"""benchmarks/scale.py: what it reads from a run, the memory of a process tree, the fits.

The suite itself is not run here (that is what the script is for); a stand-in pytest that
prints what pytest prints checks the whole pipeline from the checkpoint to the JSON rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from benchmarks import realshape, scale

XDIST_OUTPUT = """\
============================= slowest 10 durations =============================
41.07s call     properties/test_battery.py::test_battery[bert-large]
12.50s setup    properties/test_simplex.py::test_simplex_cv[bert-large]
0.01s teardown  properties/test_simplex.py::test_simplex_cv[bert-large]
=========================== short test summary info ============================
FAILED properties/test_simplex.py::test_simplex_cv[bert-large] - band
ERROR properties/test_forward.py::test_reference_forward[bert-large] - boom
===== 1 failed, 37 passed, 4 skipped, 2 errors, 1 warning in 95.31s (0:01:35) =====
"""


def test_counts_of_the_final_summary() -> None:
    counts = scale.parse_counts(XDIST_OUTPUT)
    assert counts == {
        "passed": 37,
        "failed": 1,
        "error": 2,
        "skipped": 4,
        "xfailed": 0,
        "xpassed": 0,
    }
    assert scale.parse_counts("==== 3 passed in 0.5s ====\n")["passed"] == 3  # type: ignore[index]
    assert scale.parse_counts("Traceback (most recent call last):\n") is None


def test_slowest_phase_from_durations() -> None:
    stage = scale.slowest_test_phase(XDIST_OUTPUT)
    assert stage == scale.Stage(
        "properties/test_battery.py::test_battery[bert-large] (call)", 41.07, "pytest --durations"
    )
    assert scale.slowest_test_phase("no durations here") is None


def test_recorded_timings_come_first(tmp_path: Path) -> None:
    findings = tmp_path / "findings.json"
    records = [
        {"property": "simplex_cv", "details": {"timings": {"read": 2.0, "volumes": 7.5}}},
        {"property": "battery", "details": {"timings": {"spectra": 30.25, "note": "x"}}},
        {"property": "q_sparsity", "details": {}},
    ]
    findings.write_text(json.dumps({"schema_version": 1, "findings": records}))
    assert scale.slowest_stage(findings, XDIST_OUTPUT) == scale.Stage(
        "battery: spectra", 30.25, "findings timings"
    )
    findings.write_text(json.dumps({"findings": [{"property": "x", "details": {}}]}))
    fallback = scale.slowest_stage(findings, XDIST_OUTPUT)
    assert fallback is not None
    assert fallback.source == "pytest --durations"
    assert scale.slowest_stage(tmp_path / "missing.json", "") is None


def test_growth_exponent_is_the_log_log_slope() -> None:
    points = [(n, 3.0 * n**1.5) for n in (1e8, 1e9, 4e9, 7e9)]
    exponent = scale.growth_exponent(points)
    assert exponent == pytest.approx(1.5, rel=1e-9)
    assert scale.growth_exponent([(1e9, 5.0)]) is None
    assert scale.growth_exponent([(1e9, 5.0), (1e9, 6.0)]) is None


def test_stage_names_read_with_the_size() -> None:
    folder = Path("/cache/bert-large-0123")
    stage = scale.Stage(f"properties/t.py::test_x[{folder}]@{folder} (call)", 2.0, "d")
    assert (
        scale.shorten(stage, folder, "bert-large").name
        == "properties/t.py::test_x[bert-large] (call)"
    )


def test_exponents_are_described() -> None:
    fit = {"wall_s": 1.234, "peak_anon_bytes": 0.5, "sizes": ["a", "b", "c"]}
    assert scale.describe_exponents(fit) == (
        "growth against parameters (least squares on log-log over 3 sizes): "
        "wall time ∝ N^1.23, peak anonymous memory ∝ N^0.50"
    )


def test_exponents_leave_out_runs_killed_at_the_timeout() -> None:
    rows = [
        scale.Row("a", parameters=10, wall_s=10.0, peak_anon_bytes=100),
        scale.Row("b", parameters=100, wall_s=100.0, peak_anon_bytes=1000),
        scale.Row("c", parameters=1000, wall_s=5.0, peak_anon_bytes=10, timed_out=True),
        scale.Row("d", error="building the checkpoint failed"),
    ]
    fit = scale.exponents(rows)
    assert fit["sizes"] == ["a", "b"]
    assert fit["wall_s"] == pytest.approx(1.0)
    assert fit["peak_anon_bytes"] == pytest.approx(1.0)


# A process that holds `mb` MiB of anonymous memory (written, so resident) and starts a child
# holding half as much, then sleeps.
_HOLDER = textwrap.dedent(
    """
    import subprocess, sys, time
    mb = int(sys.argv[1])
    block = b"x" * (mb << 20)
    kids = []
    if mb >= 16:
        kids.append(subprocess.Popen([sys.executable, __file__, str(mb // 2)]))
    time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 30)
    for k in kids:
        k.kill()
    """
)


def _holder(tmp_path: Path) -> Path:
    script = tmp_path / "holder.py"
    script.write_text(_HOLDER)
    return script


def test_memory_is_summed_over_the_process_tree(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, str(_holder(tmp_path)), "64", "3"])
    try:
        memory = scale.TreeMemory(proc.pid, interval=0.05)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            memory.sample()
            if memory.peak_processes >= 3 and memory.peak >= 112 << 20:
                break
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    # 64 + 32 + 16 MiB in three processes, none of which alone holds that much
    assert memory.peak_processes >= 3
    assert memory.peak >= 112 << 20


def test_timeout_ends_the_whole_tree(tmp_path: Path) -> None:
    log = tmp_path / "log"
    script = _holder(tmp_path)
    cmd = [
        sys.executable,
        "-c",
        f"import runpy, sys; sys.argv = ['h', '32']; runpy.run_path({str(script)!r})",
    ]
    start = time.monotonic()
    run = scale.run_measured(cmd, log, timeout=2.0, cwd=tmp_path)
    assert run.exit_code is None
    assert time.monotonic() - start < 15
    assert run.peak_anon_bytes >= 40 << 20  # the 32 MiB parent and its 16 MiB child
    assert run.samples >= 2
    time.sleep(0.3)
    assert running_with(str(script)) == []


def running_with(argument: str) -> list[int]:
    """Processes whose command line holds `argument`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            words = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if entry.name.isdigit() and any(argument.encode() in w for w in words):
            found.append(int(entry.name))
    return found


def test_the_command_is_the_users() -> None:
    cmd = scale.pytest_command(
        Path("/venv/bin/pytest"), Path("/ckpt"), Path("/t/findings.json"), workers=3, device=None
    )
    assert cmd[:6] == ["/venv/bin/pytest", "properties", "-n", "3", "--model", "/ckpt"]
    assert cmd[6:11] == [
        "--no-baselines",
        "-p",
        "no:cacheprovider",
        "--findings",
        "/t/findings.json",
    ]
    assert "--device" not in cmd
    cuda = scale.pytest_command(Path("p"), Path("c"), Path("f"), workers=2, device="cuda")
    assert cuda[cuda.index("--device") + 1] == "cuda"


def test_default_sizes_are_the_builders() -> None:
    assert scale.DEFAULT_SIZES == realshape.DEFAULT_SIZES


def test_table_shows_every_outcome() -> None:
    rows = [
        scale.Row(
            "bert-large",
            parameters=335_141_888,
            bytes=670_329_456,
            wall_s=95.3,
            exit_code=1,
            counts={"passed": 37, "failed": 1, "error": 2, "skipped": 4},
            peak_anon_bytes=3_200_000_000,
            slowest_stage={
                "name": "battery: spectra",
                "seconds": 30.2,
                "source": "findings timings",
            },
        ),
        scale.Row("olmo-3-7b", parameters=7_298_011_136, wall_s=600.0, timed_out=True),
        scale.Row("broken", error="broken: building the checkpoint failed (exit 2)"),
    ]
    text = scale.table(rows)
    lines = text.splitlines()
    assert lines[0].split() == [
        "size",
        "params",
        "on",
        "disk",
        "wall",
        "exit",
        "pass",
        "fail",
        "error",
        "skip",
        "peak",
        "anon",
    ]
    assert lines[1].split() == [
        "bert-large",
        "335.14",
        "M",
        "670.33",
        "MB",
        "95.3",
        "s",
        "1",
        "37",
        "1",
        "2",
        "4",
        "3.20",
        "GB",
    ]
    assert "timeout" in lines[2]
    assert "bert-large: slowest battery: spectra: 30.2 s (findings timings)" in text
    assert "broken: broken: building the checkpoint failed (exit 2)" in text


FAKE_PYTEST = """\
#!{python}
import json, sys
args = sys.argv[1:]
findings = args[args.index("--findings") + 1]
json.dump({{"findings": [{{"property": "p", "details": {{"timings": {{"read": 0.5}}}}}}]}}, open(findings, "w"))
print("model:", args[args.index("--model") + 1])
print("==== 2 passed, 1 failed in 0.10s ====")
sys.exit(1)
"""


def test_end_to_end_with_a_stand_in_pytest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "pytest"
    fake.write_text(FAKE_PYTEST.format(python=sys.executable))
    fake.chmod(0o755)
    config = tmp_path / "mini-bert.json"
    config.write_text(
        json.dumps(
            {
                "architectures": ["BertModel"],
                "model_type": "bert",
                "hidden_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "intermediate_size": 64,
                "max_position_embeddings": 16,
                "vocab_size": 64,
            }
        )
    )
    monkeypatch.setenv("TERRAIN_BENCH_CACHE", str(tmp_path / "cache"))
    rows_path = tmp_path / "out" / "rows.json"
    code = scale.main(
        [
            "--config",
            str(config),
            "--pytest",
            str(fake),
            "--json",
            str(rows_path),
            "--keep",
            str(tmp_path / "work"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    payload = json.loads(rows_path.read_text())
    (row,) = payload["rows"]
    assert row["size"] == "mini-bert"
    assert Path(row["folder"]).parent == tmp_path / "cache"
    assert row["exit_code"] == 1
    assert row["counts"]["passed"] == 2
    assert row["counts"]["failed"] == 1
    assert row["slowest_stage"] == {"name": "p: read", "seconds": 0.5, "source": "findings timings"}
    assert row["parameters"] == sum(t.numel() for t in stored_tensors(Path(row["folder"])))
    assert row["bytes"] == sum(p.stat().st_size for p in Path(row["folder"]).iterdir())
    assert row["peak_anon_bytes"] > 0
    assert payload["growth_exponents"]["wall_s"] is None  # one size: no slope
    assert "mini-bert" in out
    assert "growth exponents: need two sizes whose runs finished" in out
    log = (tmp_path / "work" / "mini-bert" / "pytest.log").read_text()
    assert f"model: {row['folder']}" in log


def stored_tensors(folder: Path) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    for path in folder.glob("*.safetensors"):
        with safe_open(str(path), "pt") as f:
            out.extend(f.get_tensor(k) for k in f.keys())  # noqa: SIM118
    return out


def test_a_missing_pytest_is_named(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        scale.main(["--sizes", "bert-large", "--pytest", str(tmp_path / "nope")])


def test_proc_scan_matches_children_files() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        assert proc.pid in scale.children(os.getpid())
        assert scale._parents()[proc.pid] == os.getpid()
    finally:
        proc.kill()
        proc.wait()
