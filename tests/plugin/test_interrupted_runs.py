"""Runs that end early: Ctrl-C, a worker killed mid-property, a process killed while it
writes baselines or findings. None reports "pass", every file is complete or as it was,
and a killed worker's model is a harness error while the others are still reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.plugin.harness import Harness, make_harness

ONE = "models:\n  tiny-bert:\n    source: synthetic:bert-tiny\n    default: true\n"
TWO = ONE + "  victim:\n    source: synthetic:bert-tiny\n    default: true\n"

# A property file of the throw-away project whose last test signals its own process for
# one model: the same as an operator's Ctrl-C, or the kernel's OOM killer, at that moment.
_SIGNAL_TEST = """
import os
import signal

import pytest

pytestmark = pytest.mark.weights


def test_zz_signal(model):
    # once per run, as an operator's signal comes once (the marker is the run's)
    marker = os.path.join(os.environ["TERRAIN_CACHE"], "signalled-" + os.environ["RUN_ID"])
    if model.name == "victim" and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.{signal})
"""

# Kills the process between writing a temporary file's bytes and renaming it into place:
# the moment a plain write would leave a truncated file.
_KILL_IN_WRITE = """
import os
import signal

import terrain.atomic


def pytest_configure(config):
    if os.environ.get("KILL_IN_WRITE"):
        terrain.atomic.os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture
def harness(pytester: pytest.Pytester, replica_cache: Path) -> Harness:
    return make_harness(pytester, replica_cache)


def _with_signal(harness: Harness, signal: str) -> None:
    path = harness.pytester.path / "properties" / "test_zz_signal.py"
    path.write_text(_SIGNAL_TEST.format(signal=signal))
    harness.pytester._monkeypatch.setenv("RUN_ID", harness.pytester.path.name)


def test_sigint_run_is_incomplete_never_pass(harness: Harness) -> None:
    harness.models(TWO)
    _with_signal(harness, "SIGINT")
    result = harness.run("-p", "no:randomly", "--model", "tiny-bert", "--model", "victim")
    assert result.ret == 2
    doc = harness.findings()
    assert doc["verdict"]["status"] == "incomplete"
    assert doc["verdict"]["exit_code"] == 2
    assert doc["findings"], "the findings recorded before the interrupt are kept"
    assert "incomplete" in harness.page()


def test_killed_worker_is_a_harness_error_of_its_model_only(harness: Harness) -> None:
    harness.models(TWO)
    _with_signal(harness, "SIGKILL")
    result = harness.run("-n", "2", "--model", "tiny-bert", "--model", "victim")
    assert result.ret == 6
    doc = harness.findings()
    assert doc["verdict"]["status"] == "harness-error"
    assert doc["verdict"]["harness_errors"] == [["victim", "test_zz_signal"]]
    (error,) = doc["errors"]
    assert error["model"] == "victim"
    assert "crashed" in error["message"]
    per_model = {
        m: {f["property"] for f in doc["findings"] if f["model"] == m}
        for m in ("tiny-bert", "victim")
    }
    assert len(per_model["tiny-bert"]) == 4, per_model
    assert len(per_model["victim"]) == 4, per_model  # its other tests ran on a new worker


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.json"))}


def test_killed_writes_leave_every_file_complete_or_as_it_was(harness: Harness) -> None:
    harness.models(ONE)
    (harness.pytester.path / "conftest.py").write_text(
        (harness.pytester.path / "conftest.py").read_text() + _KILL_IN_WRITE
    )
    baselines = harness.pytester.path / "baselines"
    findings = harness.pytester.path / "reports" / "findings.json"
    assert harness.run("--update-baselines", baselines=True).ret == 0
    recorded, first_findings = _snapshot(baselines), findings.read_bytes()
    assert len(recorded) == 4
    harness.pytester._monkeypatch.setenv("KILL_IN_WRITE", "1")
    killed = harness.run("--update-baselines", baselines=True)  # dies at its first write
    assert killed.ret != 0
    assert _snapshot(baselines) == recorded
    assert findings.read_bytes() == first_findings
    killed = harness.run(baselines=True)  # compares, then dies writing findings.json
    assert killed.ret != 0
    assert findings.read_bytes() == first_findings
    harness.pytester._monkeypatch.delenv("KILL_IN_WRITE")
    result = harness.run(baselines=True)
    assert result.ret == 0
    doc = json.loads(findings.read_text())
    assert doc["verdict"]["status"] == "pass"
    assert {f["kind"] for f in doc["findings"]} <= {"within band", "matches baseline"}
    # The killed writer's temporary file is hidden, and replaced at the next recording.
    assert all(p.name.startswith(".") for p in baselines.rglob("*.tmp"))
