"""Controller side: gathers every report's finding, baseline comparison, evidence and errors,
prints progress per model, writes findings.json and sets an exit code that tells
"a property regressed" (1) from "the harness could not measure a model" (6)."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from plugins.baselines import BASELINE
from plugins.loading import LOADS, worker_id
from plugins.options import settings
from plugins.recording import FINDING, LOADS_KEY, MODEL_INFO, WHERE, decoded
from terrain.findings import FINDINGS_SCHEMA_VERSION
from terrain.report.environment import environment
from terrain.report.html import fmt
from terrain.report.page import render_page, write_page

# pytest's own codes are 0-5; 6 says the harness could not run a model (unreadable, NaN,
# unknown architecture) while no property failed. A bad models.yaml stays 4 (usage error).
EXIT_HARNESS_ERROR = 6


class FindingsCollector:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.findings: list[dict[str, Any]] = []
        self.cells: dict[tuple[str, str], dict[str, Any]] = {}  # (model, test) -> matrix cell
        self.claims: dict[str, str] = {}  # test -> claim (its docstring)
        self.evidence: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
        self.errors: list[dict[str, Any]] = []
        self.models: dict[str, dict[str, Any]] = {}
        self.loads: dict[str, dict[str, int]] = defaultdict(dict)

    # -- gathering ----------------------------------------------------------------------
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        places = decoded(report, WHERE)
        if not places:
            return
        where = places[0]
        model, test = where["model"], where["test"]
        self.claims.setdefault(test, where.get("claim", ""))
        for info in decoded(report, MODEL_INFO):
            self.models.setdefault(model, info)
        records = decoded(report, FINDING) if report.when == "call" else []
        baselines = decoded(report, BASELINE)
        for record in records:
            record = {**record, "outcome": report.outcome, "test": test}
            if baselines:
                record["baseline"] = baselines[0]
            self.findings.append(record)
            self.cells[(model, test)] = _cell(record)
            self.evidence[(model, test)] += [
                {"title": e.get("name") or "", "png": e["content"]}
                for e in getattr(report, "extras", [])
                if e.get("format_type") == "image"
            ]
            self._progress(model, record["property"], self.cells[(model, test)], record["value"])
        if report.failed and not records:
            lines = report.longreprtext.strip().splitlines()
            message = lines[-1] if lines else ""
            self.errors.append({**where, "when": report.when, "message": message})
            self.cells[(model, test)] = {"status": "error", "text": message}
            self._progress(model, test, self.cells[(model, test)])
        elif report.skipped and not records and (model, test) not in self.cells:
            reason = _skip_reason(report)
            status = "not-applicable" if "not applicable" in reason else "skipped"
            self.cells[(model, test)] = {"status": status, "text": reason}

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        for name, count in getattr(node, "workeroutput", {}).get(LOADS_KEY, {}).items():
            self.loads[name][node.gateway.id] = int(count)

    def _progress(
        self, model: str, prop: str, cell: dict[str, Any], value: float | None = None
    ) -> None:
        """One line per finding, so a long run shows which model and property it is on."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or self.config.get_verbosity() < 0:
            return
        shown = "" if value is None else f" = {fmt(value)}"
        if reporter._tw.width_of_current_line:  # after xdist's progress dots
            reporter.write("\n")
        note = f" ({cell['text']})" if cell["status"] == "error" else ""
        reporter.write_line(f"terrain: {model} · {prop}{shown}: {cell['status']}{note}")

    # -- results ------------------------------------------------------------------------
    def verdict(self) -> dict[str, Any]:
        regressed = sorted(
            {(c["model"], c["property"]) for c in self.findings if c["outcome"] == "failed"}
        )
        errors = sorted({(e["model"], e["test"]) for e in self.errors})
        status = "regressed" if regressed else "harness-error" if errors else "pass"
        return {
            "status": status,
            "failed_properties": [list(x) for x in regressed],
            "harness_errors": [list(x) for x in errors],
        }

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.loads:  # no xdist: this process did the loading
            for name, count in LOADS.items():
                self.loads[name][worker_id()] = count
        verdict = self.verdict()
        if (
            session.exitstatus == pytest.ExitCode.TESTS_FAILED
            and verdict["status"] == "harness-error"
        ):
            session.exitstatus = EXIT_HARNESS_ERROR
        verdict["exit_code"] = int(session.exitstatus)
        env = environment(self.config.rootpath)  # one record of the run for both files
        self.write(self.path("findings.json"), verdict, env)
        self.write_page(self.path("index.html"), verdict, env)

    def write_page(self, path: Path, verdict: dict[str, Any], env: dict[str, Any]) -> None:
        tests_html = self.config.getoption("htmlpath", None)
        html = render_page(
            title="terrain findings",
            verdict=verdict,
            environment=env,
            models=self.model_table(),
            findings=sorted(self.findings, key=lambda r: (r["property"], r["model"])),
            cells=self.cells,
            claims=self.claims,
            evidence=self.evidence,
            errors=self.errors,
            tests_page=os.path.relpath(tests_html, path.parent) if tests_html else None,
        )
        write_page(path, html)

    def path(self, name: str) -> Path:
        chosen = self.config.getoption("findings")
        if chosen and name == "findings.json":
            return Path(chosen)
        return report_dir(self.config) / name

    def model_table(self) -> dict[str, dict[str, Any]]:
        table: dict[str, dict[str, Any]] = {}
        for spec in settings(self.config).selected:
            info = dict(self.models.get(spec.name, {"name": spec.name, "source": spec.source}))
            info["loads"] = dict(self.loads.get(spec.name, {}))
            table[spec.name] = info
        return table

    def document(self, verdict: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
        return {
            "schema_version": FINDINGS_SCHEMA_VERSION,
            "verdict": verdict,
            "environment": env,
            "models": self.model_table(),
            "findings": sorted(self.findings, key=lambda r: (r["model"], r["property"])),
            "errors": self.errors,
        }

    def write(self, path: Path, verdict: dict[str, Any], env: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(self.document(verdict, env), indent=1, default=str), encoding="utf-8"
        )


def _cell(record: dict[str, Any]) -> dict[str, Any]:
    """Matrix cell of a measured finding: pass, fail, measured (no band), regressed."""
    baseline = (record.get("baseline") or {}).get("status")
    if record.get("outcome") == "failed":
        status = (
            "regressed"
            if baseline in ("regressed", "missing", "stale") and record["verdict"] != "fail"
            else "fail"
        )
    elif record["verdict"] == "no-expectation":
        status = "measured"
    else:
        status = "pass"
    return {"status": status, "text": fmt(record["value"])}


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def report_dir(config: pytest.Config) -> Path:
    chosen = config.getoption("findings")
    if chosen:
        return Path(chosen).parent
    return config.rootpath / "reports"


_COLLECTOR = pytest.StashKey[FindingsCollector]()


def collector(config: pytest.Config) -> FindingsCollector | None:
    return config.stash.get(_COLLECTOR, None)


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return  # workers ship reports and load counts; the controller writes
    plugin = FindingsCollector(config)
    config.stash[_COLLECTOR] = plugin
    config.pluginmanager.register(plugin, "terrain-findings")
