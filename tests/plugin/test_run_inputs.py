"""Command-line values checked before any model is measured (usage error, exit 4, naming
the option), one run per output folder at a time, and two runs of the same model giving
the same findings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from plugins.run_lock import lock_for
from tests.plugin.harness import Harness, make_harness

ONE = "models:\n  tiny-bert:\n    source: synthetic:bert-tiny\n    default: true\n"
UNWRITABLE = "/proc/terrain-none"  # /proc takes no new files, even from root

# (id, arguments, what the one line must say); "{dir}" is an existing folder, "{file}" a file
ROWS = [
    ("model-empty", ["--model", ""], "--model: an empty value"),
    ("model-blank", ["--model", "  "], "--model: an empty value"),
    ("model-nul", ["--model", "a\x00b"], "--model"),
    ("findings-empty", ["--findings", ""], "--findings: an empty"),
    ("findings-folder", ["--findings", "{dir}"], "--findings '{dir}': a folder"),
    ("findings-slash", ["--findings", "new/"], "--findings 'new/': a folder"),
    ("findings-under-file", ["--findings", "{file}/f.json"], "is a file, not a folder"),
    ("findings-unwritable", ["--findings", f"{UNWRITABLE}/f.json"], "not writable"),
    ("baseline-dir-empty", ["--baseline-dir", ""], "--baseline-dir: an empty value"),
    ("baseline-dir-file", ["--baseline-dir", "{file}"], "a file, not a folder"),
    ("baseline-dir-unwritable", ["--update-baselines", "--baseline-dir", UNWRITABLE], "not writable"),
    ("baseline-of-empty", ["--baseline-of", ""], "--baseline-of: an empty value"),
    ("models-file-empty", ["--models-file", ""], "--models-file: an empty value"),
    ("models-file-folder", ["--models-file", "{dir}"], "is a folder, not a models file"),
    ("cache-file", ["--terrain-cache", "{file}"], "--terrain-cache"),
    ("html-folder", ["--html", "{dir}"], "--html '{dir}': a folder"),
]  # fmt: skip


@pytest.fixture
def harness(pytester: pytest.Pytester, replica_cache: Path) -> Harness:
    made = make_harness(pytester, replica_cache)
    made.models(ONE)
    return made


@pytest.mark.parametrize(("args", "message"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_command_line_value_stops_before_any_model(
    harness: Harness, args: list[str], message: str
) -> None:
    root = harness.pytester.path
    (root / "a-folder").mkdir()
    (root / "a-file").write_text("")
    given = [a.format(dir="a-folder", file="a-file") for a in args]
    harness.pytester._monkeypatch.setenv("TERRAIN_CACHE", str(harness.cache))
    if any("\x00" in a for a in given):  # no NUL byte passes through a process's argv
        # In-process, pytest's assertion rewriting warns that terrain's plugin modules were
        # imported by this session already, and the project turns warnings into errors.
        result = harness.pytester.runpytest(
            "-W",
            "ignore::pytest.PytestAssertRewriteWarning",
            "properties",
            "--no-baselines",
            *given,
        )
    else:
        result = harness.pytester.runpytest_subprocess(
            "properties", "--no-baselines", *given, timeout=120
        )
    assert result.ret == 4
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1, result.stderr.lines
    assert message.format(dir="a-folder") in errors[0]
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert not (root / "reports").exists()


def test_a_second_run_on_the_same_findings_is_refused(harness: Harness) -> None:
    reports = harness.pytester.path / "reports"
    with lock_for(harness.cache, reports):  # as a run in progress holds it
        harness.pytester._monkeypatch.setenv("TERRAIN_CACHE", str(harness.cache))
        result = harness.pytester.runpytest_subprocess(
            "properties", "--no-baselines", "--model", "tiny-bert", timeout=120
        )
    assert result.ret == 4
    assert "another terrain run is writing there now" in result.stderr.str()
    assert not reports.exists()


# Fields that describe when and where a run happened, not what it measured
# (docs/findings.md): the environment record and which worker loaded a model how often.
def _measured(doc: dict[str, Any]) -> dict[str, Any]:
    doc = {k: v for k, v in doc.items() if k != "environment"}
    for info in doc["models"].values():
        info.pop("loads")
    return doc


def test_two_runs_give_identical_findings(harness: Harness) -> None:
    first = harness.run("-p", "no:randomly")
    assert first.ret == 0
    one = harness.findings()
    second = harness.run("-n", "2")  # another test order (randomly) and process layout
    assert second.ret == 0
    two = harness.findings()
    assert two["findings"]
    assert json.dumps(_measured(one), sort_keys=True) == json.dumps(_measured(two), sort_keys=True)
