"""Findings: recorded by tests (on the workers under xdist) and attached to their reports.

Everything terrain knows about a test travels in one plain-data attribute of its report,
`report.terrain` (xdist ships report attributes to the controller; numpy scalars would
crash its serializer, so records are JSON-shaped): where the test ran (model, test,
claim), the model's provenance, and each finding with its baseline comparison and its
outcome kind. JUnit gets scalar properties only (model, property, value, verdict, band,
null); the full finding stays in findings.json. Everything is keyed by (model, property),
never by node id, which changes under `--dist loadgroup` (`@group` suffix).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from terrain.config import ModelSpec
from terrain.findings import Finding
from terrain.model import LoadedModel
from terrain.report.evidence import Evidence
from terrain.report.html import expected_text, null_text

from .loading import LOADS

ATTRIBUTE = "terrain"
LOADS_KEY = "terrain_loads"
FINDINGS_KEY = pytest.StashKey[list[Finding]]()
COMPARISONS_KEY = pytest.StashKey[dict[str, dict[str, Any]]]()  # property -> comparison
MODEL_KEY = pytest.StashKey[dict[str, Any]]()
CLAIM_KEY = pytest.StashKey[str]()
PROPERTY_KEY = pytest.StashKey[str]()  # the property a test evaluates

Recorder = Callable[..., None]


def terrain_data(report: pytest.TestReport | pytest.CollectReport) -> dict[str, Any]:
    """What this plugin attached to a report ({} for reports it did not touch)."""
    data = getattr(report, ATTRIBUTE, None)
    return data if isinstance(data, dict) else {}


def model_info(model: LoadedModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "source": model.spec.source,
        "kind": model.source.kind,
        "random_init": model.random_init,
        "provenance": model.source.provenance,
        "fingerprint": model.checkpoint.fingerprint,
        "device": model.device,
        "parameters": model.parameters,
        "census": model.anatomy.census(),
        "dtypes": model.dtype_census(),
        "nulls": model.null_description(),
    }


def _plain(value: Any) -> Any:
    """JSON-shaped data (numpy scalars and arrays become floats and lists)."""
    return json.loads(json.dumps(value, default=_default))


def _default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return float(value) if isinstance(value, int | float) else str(value)


@pytest.fixture
def record_finding(
    request: pytest.FixtureRequest, extras: list[Any], model: LoadedModel
) -> Recorder:
    """Attach a Finding (and its evidence plots) to this test's report."""
    import pytest_html

    def record(finding: Finding, evidence: Sequence[Evidence] = (), claim: str = "") -> None:
        node = request.node
        node.stash.setdefault(FINDINGS_KEY, []).append(finding)
        node.stash[MODEL_KEY] = model_info(model)
        if claim:
            node.stash[CLAIM_KEY] = claim
        for ev in evidence:
            extras.append(pytest_html.extras.png(ev.png_base64, ev.title))

    return record


def outcome_kind(record: dict[str, Any], passed: bool) -> str:
    """How a recorded finding was judged: within band, matches baseline, measured (nothing
    to compare), baseline recorded; else fail (its band), regressed (its baseline) or stale
    baseline (written by another measure version: not compared, to be re-recorded)."""
    status = (record.get("baseline") or {}).get("status")
    band = record.get("verdict") != "no-expectation"
    if not passed:
        if record.get("verdict") == "fail":
            return "fail"
        return "stale baseline" if status == "stale" else "regressed"
    if band:
        return "within band"
    if status == "match":
        return "matches baseline"
    if status == "recorded":
        return "baseline recorded"
    return "measured"


def _junit(record: dict[str, Any]) -> list[tuple[str, object]]:
    value = record.get("value")
    return [
        ("terrain.model", record["model"]),
        ("terrain.property", record["property"]),
        ("terrain.value", float(value) if isinstance(value, int | float) else math.nan),
        ("terrain.verdict", record["kind"]),
        ("terrain.band", expected_text(record)),
        ("terrain.null", null_text(record)),
    ]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    params = getattr(getattr(item, "callspec", None), "params", {})
    spec = params.get("model")
    if not isinstance(spec, ModelSpec):  # not one of terrain's tests
        return
    # A test parametrised beyond the model is one column per other parameter value.
    others = "-".join(str(v) for k, v in params.items() if k != "model")
    test = getattr(item, "originalname", item.name) + (f"[{others}]" if others else "")
    data: dict[str, Any] = {"where": {"model": spec.name, "test": test}}
    if report.when == "call":
        comparisons = item.stash.get(COMPARISONS_KEY, {})
        records = []
        for finding in item.stash.get(FINDINGS_KEY, []):
            record = _plain(finding.as_record())
            record["test"] = test
            if finding.property in comparisons:
                record["baseline"] = comparisons[finding.property]
            record["outcome"] = report.outcome
            record["kind"] = outcome_kind(record, report.passed)
            records.append(record)
            # JUnit writes the teardown report's properties, which come from the item.
            item.user_properties.extend(_junit(record))
        data["findings"] = records
        if MODEL_KEY in item.stash:
            data["model_info"] = _plain(item.stash[MODEL_KEY])
    if CLAIM_KEY in item.stash:
        data["where"]["claim"] = item.stash[CLAIM_KEY]
    if PROPERTY_KEY in item.stash:
        data["where"]["property"] = item.stash[PROPERTY_KEY]
    setattr(report, ATTRIBUTE, data)


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[LOADS_KEY] = dict(LOADS)
