"""Baselines: `--update-baselines` records each finding; otherwise each finding is compared.

The comparison runs after the property's own verdict: a value that moved beyond its
tolerance fails the test with a diff table, and says what changed — the checkpoint (its
fingerprint differs from the recorded one) or the harness (same checkpoint, another value,
measure version or environment). A baseline records the commit of the tree it was
recorded from and whether that tree had uncommitted changes. Keys are (model, property),
never node ids. Properties declared with `compared_with_baselines=False` (the deltas against
a base model, whose values belong to the pair) are judged by their bands only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Generator
from importlib import resources
from pathlib import Path

import pytest
from _pytest.outcomes import Failed

from terrain.baselines import BaselineStore, Comparison
from terrain.errors import TerrainError
from terrain.findings import Finding
from terrain.model import LoadedModel
from terrain.property import declarations
from terrain.report.environment import git_state, package_versions

from .options import chosen_path, settings
from .recording import COMPARISONS_KEY, FINDINGS_KEY


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("terrain")
    group.addoption(
        "--update-baselines",
        action="store_true",
        help="record every finding as the model's baseline (JSON under --baseline-dir)",
    )
    group.addoption(
        "--baseline-dir",
        default=None,
        metavar="DIR",
        help="baselines folder (default: ini terrain_baseline_dir, else baselines/)",
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


_GIT_STATE = pytest.StashKey[tuple[str | None, bool | None]]()


def pytest_configure(config: pytest.Config) -> None:
    # The tree's state before any baseline is written: the files a recording run writes
    # would otherwise mark every later baseline of the run as from a dirty tree.
    if config.getoption("update_baselines", False):
        config.stash[_GIT_STATE] = git_state(config.rootpath)


def baseline_dir(config: pytest.Config) -> Path:
    """--baseline-dir, else the ini's terrain_baseline_dir, else baselines/ in the rootdir."""
    chosen = chosen_path(config, "baseline_dir", "terrain_baseline_dir")
    return chosen if chosen is not None else config.rootpath / "baselines"


def store(config: pytest.Config) -> BaselineStore:
    """Baselines are recorded in baseline_dir; entries of the models file terrain ships are
    also compared with the baselines it ships, when the project has none of its own."""
    fallbacks = (shipped_baselines(),) if settings(config).shipped_models else ()
    return BaselineStore(baseline_dir(config), fallbacks)


def shipped_baselines() -> Path:
    return Path(str(resources.files("terrain.shipped_baselines")))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    failure: Failed | None = None
    try:
        result = yield
    except Failed as e:  # a band failure: the baseline comparison still runs
        failure = e
    # A delta's value belongs to the pair (model, base model): no baseline of the model holds it.
    findings = [
        f
        for f in item.stash.get(FINDINGS_KEY, [])
        if declarations().get(f.property).compared_with_baselines
    ]
    config = item.config
    if findings and not config.getoption("no_baselines"):
        model = item.funcargs.get("model")  # type: ignore[attr-defined]
        try:
            problems = [_baseline(config, item, f, model) for f in findings]
        except TerrainError as e:  # an unreadable baseline file, an unwritable folder
            problems = [str(e)]
        message = "\n\n".join(p for p in problems if p)
        if message:
            if failure is not None:
                message = f"{failure.msg}\n\n{message}"
            pytest.fail(message, pytrace=False)
    if failure is not None:
        raise failure
    return result


def _baseline(config: pytest.Config, item: pytest.Item, finding: Finding, model: object) -> str:
    spec = next(s for s in settings(config).selected if s.name == finding.model)
    tolerance = spec.tolerance(finding.property, declarations().get(finding.property).tolerance)
    baselines = store(config)
    fingerprint = model.checkpoint.fingerprint if isinstance(model, LoadedModel) else None
    if config.getoption("update_baselines"):
        commit, dirty = config.stash.get(_GIT_STATE, (None, None))
        provenance = {
            "fingerprint": fingerprint,
            "packages": package_versions(),
            "git_commit": commit,
            "git_dirty": dirty,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        path = baselines.record(finding, provenance, tolerance)
        comparison = Comparison(
            finding.model, finding.property, finding.model, "recorded", message=str(path)
        )
        _attach(item, comparison)
        return ""
    reference = config.getoption("baseline_of") or finding.model
    comparison = baselines.compare(finding, reference, tolerance, fingerprint=fingerprint)
    _attach(item, comparison)
    where = f"model {finding.model!r}, property {finding.property!r}"
    run = settings(config)
    ad_hoc = finding.model not in run.models.models or run.shipped_models
    if comparison.status == "missing" and ad_hoc and not config.getoption("baseline_of"):
        # A path or hub id given on the command line (or an entry of the models file
        # terrain ships, in a project that recorded none) has no baseline to keep: it is
        # measured; --baseline-of names one to compare with.
        return ""
    if comparison.status == "missing":
        return (
            f"{where}: no baseline of {reference!r} ({comparison.message}); record one with:\n"
            f"  pytest --model {reference} --update-baselines"
        )
    if comparison.status == "stale":
        return f"{where}: stale baseline: {comparison.message}; re-record with --update-baselines"
    if comparison.status == "regressed":
        return (
            f"{where}: regressed against the baseline of {reference!r} "
            f"({comparison.changed}):\n{comparison.table()}"
        )
    return ""


def _attach(item: pytest.Item, comparison: Comparison) -> None:
    item.stash.setdefault(COMPARISONS_KEY, {})[comparison.property] = comparison.as_record()
