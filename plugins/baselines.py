"""Baselines: `--update-baselines` records each finding; otherwise each finding is compared.

The comparison runs after the property's own verdict, also when the property was only
measured (skipped for want of a band): a value that moved beyond tolerance fails the test
with a diff table. Keys are (model, property), never node ids.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Generator
from pathlib import Path

import pytest
from _pytest.outcomes import OutcomeException, Skipped

from plugins.options import settings
from terrain.baselines import BaselineStore, Comparison
from terrain.findings import Finding
from terrain.model import LoadedModel
from terrain.property import declarations
from terrain.report.environment import git_commit, package_versions

FINDINGS_KEY = pytest.StashKey[list[Finding]]()
BASELINE = "terrain_baseline"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("terrain")
    group.addoption(
        "--update-baselines",
        action="store_true",
        help="record every finding as the model's baseline (JSON under --baseline-dir)",
    )
    group.addoption(
        "--baseline-dir", default=None, metavar="DIR", help="baselines folder (default: baselines/)"
    )
    group.addoption(
        "--baseline-of",
        default=None,
        metavar="NAME",
        help="compare every selected model against the baseline of model NAME",
    )
    group.addoption(
        "--no-baselines",
        action="store_true",
        help="judge the bands only; neither record nor compare",
    )


def store(config: pytest.Config) -> BaselineStore:
    chosen = config.getoption("baseline_dir")
    return BaselineStore(Path(chosen) if chosen else config.rootpath / "baselines")


def remember(item: pytest.Item, finding: Finding) -> None:
    """Called by record_finding: the finding this test will be compared on."""
    item.stash.setdefault(FINDINGS_KEY, []).append(finding)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    outcome: OutcomeException | None = None
    try:
        result = yield
    except OutcomeException as e:  # a band failure or a skip: baselines still apply
        outcome = e
    findings = item.stash.get(FINDINGS_KEY, [])
    config = item.config
    if findings and not config.getoption("no_baselines"):
        model = item.funcargs.get("model")  # type: ignore[attr-defined]
        problems = [_baseline(config, item, f, model) for f in findings]
        message = "\n\n".join(p for p in problems if p)
        if message:
            if outcome is not None and not isinstance(outcome, Skipped):
                message = f"{outcome.msg}\n\n{message}"
            pytest.fail(message, pytrace=False)
    if outcome is not None:
        raise outcome
    return result


def _baseline(config: pytest.Config, item: pytest.Item, finding: Finding, model: object) -> str:
    spec = next(s for s in settings(config).selected if s.name == finding.model)
    tolerance = spec.tolerance(finding.property, declarations().get(finding.property).tolerance)
    baselines = store(config)
    if config.getoption("update_baselines"):
        provenance = {
            "fingerprint": model.checkpoint.fingerprint if isinstance(model, LoadedModel) else None,
            "packages": package_versions(),
            "git_commit": git_commit(config.rootpath),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        path = baselines.record(finding, provenance, tolerance)
        comparison = Comparison(
            finding.model, finding.property, finding.model, "recorded", message=str(path)
        )
        _attach(item, comparison)
        return ""
    reference = config.getoption("baseline_of") or finding.model
    comparison = baselines.compare(finding, reference, tolerance)
    _attach(item, comparison)
    where = f"model {finding.model!r}, property {finding.property!r}"
    ad_hoc = finding.model not in settings(config).models.models
    if comparison.status == "missing" and ad_hoc and not config.getoption("baseline_of"):
        # A path or hub id given on the command line has no baseline to keep: it is
        # measured with default expectations; --baseline-of names one to compare with.
        return ""
    if comparison.status == "missing":
        return (
            f"{where}: no baseline of {reference!r} ({comparison.message}); record one with:\n"
            f"  pytest --model {reference} --update-baselines"
        )
    if comparison.status == "stale":
        return f"{where}: stale baseline: {comparison.message}; re-record with --update-baselines"
    if comparison.status == "regressed":
        return f"{where}: regressed against the baseline of {reference!r}:\n{comparison.table()}"
    return ""


def _attach(item: pytest.Item, comparison: Comparison) -> None:
    item.user_properties.append((BASELINE, json.dumps(comparison.as_record(), default=float)))
