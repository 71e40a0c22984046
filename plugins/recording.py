"""Findings: recorded by tests on the workers, gathered and written once on the controller.

Values travel as JSON strings in `user_properties` (xdist's serializer takes plain types
only; numpy scalars would crash it). Everything is keyed by (model, property), never by
node id, which changes under `--dist loadgroup` (`@group` suffix).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from plugins.loading import LOADS, worker_id
from plugins.options import settings
from terrain.findings import FINDINGS_SCHEMA_VERSION, Finding
from terrain.model import LoadedModel
from terrain.report.environment import environment
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
    spec = getattr(getattr(item, "callspec", None), "params", {}).get("model")
    if spec is not None:
        where = {"model": spec.name, "test": getattr(item, "originalname", item.name)}
        report.user_properties = [*report.user_properties, (WHERE, json.dumps(where))]


class FindingsCollector:
    """Controller-side: gathers findings, load-failure errors and load counts; writes JSON."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.findings: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.models: dict[str, dict[str, Any]] = {}
        self.loads: dict[str, dict[str, int]] = defaultdict(dict)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        places = decoded(report, WHERE)
        if not places:
            return
        where = places[0]
        records = decoded(report, FINDING) if report.when == "call" else []
        self.findings += [{**record, "outcome": report.outcome} for record in records]
        for info in decoded(report, MODEL_INFO):
            self.models.setdefault(where["model"], info)
        if report.failed and not records:  # the harness could not measure: not a verdict
            message = report.longreprtext.strip().splitlines()
            self.errors.append(
                {
                    **where,
                    "when": report.when,
                    "message": message[-1] if message else "",
                }
            )

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        for name, count in getattr(node, "workeroutput", {}).get(LOADS_KEY, {}).items():
            self.loads[name][node.gateway.id] = int(count)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.loads:  # no xdist: this process did the loading
            for name, count in LOADS.items():
                self.loads[name][worker_id()] = count
        self.write(self.path())

    def path(self) -> Path:
        chosen = self.config.getoption("findings")
        if chosen:
            return Path(chosen)
        html = self.config.getoption("htmlpath", None)
        base = Path(html).parent if html else self.config.rootpath / "reports"
        return base / "findings.json"

    def model_table(self) -> dict[str, dict[str, Any]]:
        table: dict[str, dict[str, Any]] = {}
        for spec in settings(self.config).selected:
            info = dict(self.models.get(spec.name, {"name": spec.name, "source": spec.source}))
            info["loads"] = dict(self.loads.get(spec.name, {}))
            table[spec.name] = info
        return table

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "schema_version": FINDINGS_SCHEMA_VERSION,
            "environment": environment(self.config.rootpath),
            "models": self.model_table(),
            "findings": sorted(self.findings, key=lambda r: (r["model"], r["property"])),
            "errors": self.errors,
        }
        path.write_text(json.dumps(document, indent=1, default=str), encoding="utf-8")


_COLLECTOR = pytest.StashKey[FindingsCollector]()


def collector(config: pytest.Config) -> FindingsCollector | None:
    return config.stash.get(_COLLECTOR, None)


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return  # workers only ship their load counts; the controller writes
    plugin = FindingsCollector(config)
    config.stash[_COLLECTOR] = plugin
    config.pluginmanager.register(plugin, "terrain-findings")


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[LOADS_KEY] = dict(LOADS)
