"""Findings: recorded by tests (on the workers under xdist) and attached to their reports.

Values travel as JSON strings in `user_properties` (xdist's serializer takes plain types
only; numpy scalars would crash it). Everything is keyed by (model, property), never by
node id, which changes under `--dist loadgroup` (`@group` suffix).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from plugins.baselines import remember
from plugins.loading import LOADS
from terrain.findings import Finding
from terrain.model import LoadedModel
from terrain.report.evidence import Evidence

FINDING = "terrain_finding"
MODEL_INFO = "terrain_model_info"
WHERE = "terrain_where"  # (model, test) of every report, also when setup failed
LOADS_KEY = "terrain_loads"

Recorder = Callable[..., None]


def decoded(report: pytest.TestReport | pytest.CollectReport, key: str) -> list[Any]:
    """The JSON values this plugin stored under `key` in a report's user_properties."""
    props = getattr(report, "user_properties", [])  # collection reports have none
    return [json.loads(str(value)) for k, value in props if k == key]


def model_info(model: LoadedModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "source": model.spec.source,
        "kind": model.source.kind,
        "random_init": model.random_init,
        "provenance": model.source.provenance,
        "fingerprint": model.checkpoint.fingerprint,
        "device": model.device,
        "census": model.anatomy.census(),
    }


@pytest.fixture
def record_finding(
    request: pytest.FixtureRequest, extras: list[Any], model: LoadedModel
) -> Recorder:
    """Attach a Finding (and its evidence plots) to this test's report."""
    import pytest_html

    def record(finding: Finding, evidence: Sequence[Evidence] = ()) -> None:
        remember(request.node, finding)
        record = finding.as_record()
        props = request.node.user_properties
        props.append((FINDING, json.dumps(record, default=float)))
        props.append((MODEL_INFO, json.dumps(model_info(model))))
        # Scalar copies for the JUnit XML.
        props += [
            ("terrain.model", finding.model),
            ("terrain.property", finding.property),
            ("terrain.value", float(finding.value)),
            ("terrain.verdict", finding.verdict),
        ]
        for ev in evidence:
            extras.append(pytest_html.extras.png(ev.png_base64, ev.title))

    return record


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    params = getattr(getattr(item, "callspec", None), "params", {})
    spec = params.get("model")
    if spec is not None:
        # A test parametrised beyond the model is one column per other parameter value.
        others = "-".join(str(v) for k, v in params.items() if k != "model")
        test = getattr(item, "originalname", item.name) + (f"[{others}]" if others else "")
        module = getattr(item, "module", None)
        doc = getattr(item, "obj", None).__doc__ or getattr(module, "__doc__", None) or ""
        where = {
            "model": spec.name,
            "test": test,
            "claim": " ".join(doc.split()),
        }
        report.user_properties = [*report.user_properties, (WHERE, json.dumps(where))]


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[LOADS_KEY] = dict(LOADS)
