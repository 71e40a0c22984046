"""Controller side: gathers every report's findings, baseline comparisons, evidence and
errors, prints progress per model, writes the reports and sets an exit code that tells
"a property regressed" (1) from "the harness could not measure a model" (6).

Outcomes a CI reads right: a finding within its band passes, and so does one without a
band that matches its baseline or has nothing to compare (an ad-hoc checkpoint); the
terminal and the report still say which was which (test status letters, one summary
line, a column). Skips are "not applicable to this architecture" (or over a stated
budget). The reports are written only when the session recorded a finding or an error
of a model, or when --findings names a file: a unit-test run or --collect-only leaves
existing reports alone. Every report file is written atomically (terrain/atomic.py).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from terrain.atomic import OutputError, write_bytes, write_text
from terrain.findings import FINDINGS_SCHEMA_VERSION
from terrain.report.claims import claim_rows
from terrain.report.environment import environment
from terrain.report.html import fmt
from terrain.report.page import render_page, write_page

from .loading import LOADS, worker_id
from .options import settings
from .outcomes import annotate_fdr, finding_cell, skip_reason
from .recording import LOADS_KEY, terrain_data

# pytest's own codes are 0-5; 6 says the harness could not run a model (unreadable, NaN,
# unknown architecture) while no property failed. A bad models.yaml stays 4 (usage error).
EXIT_HARNESS_ERROR = 6
FAILED = ("fail", "regressed")
# Test status letters of passed property tests, by how the finding was judged.
LETTERS = {
    "within band": (".", "PASSED (within band)"),
    "matches baseline": ("b", "PASSED (matches baseline)"),
    "measured": ("m", "PASSED (measured, nothing to compare)"),
    "baseline recorded": ("r", "PASSED (baseline recorded)"),
}


class FindingsCollector:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.findings: list[dict[str, Any]] = []
        self.cells: dict[tuple[str, str], dict[str, Any]] = {}  # (model, test) -> matrix cell
        self.claims: dict[str, str] = {}  # test -> claim
        self.evidence: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
        self.errors: list[dict[str, Any]] = []
        self.models: dict[str, dict[str, Any]] = {}
        self.loads: dict[str, dict[str, int]] = defaultdict(dict)
        self.outcomes: Counter[str] = Counter()  # kind -> findings (or skipped tests)
        self.skips: dict[tuple[str, str], str] = {}  # (model, property) -> reason
        self.html_tmp: Path | None = None  # pytest-html's page, moved in when reported
        self.fdr: dict[str, Any] = {}  # the run's Benjamini–Hochberg summary (at finish)

    # -- gathering ----------------------------------------------------------------------
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = terrain_data(report)
        where = data.get("where") or self._crashed(report)
        if not where:
            return
        model, test = where["model"], where["test"]
        if where.get("claim"):
            self.claims[test] = where["claim"]
        if "model_info" in data:
            self.models.setdefault(model, data["model_info"])
        records = data.get("findings", []) if report.when == "call" else []
        for record in records:
            self.findings.append(record)
            self.outcomes[record["kind"]] += 1
            self.cells[(model, test)] = finding_cell(record)
            self.evidence[(model, test)] += [
                {"title": e.get("name") or "", "png": e["content"]}
                for e in getattr(report, "extras", [])
                if e.get("format_type") == "image"
            ]
            self._progress(model, record["property"], self.cells[(model, test)], record["value"])
        if report.failed and not records:
            lines = report.longreprtext.strip().splitlines()
            crash = [line for line in lines if "crashed while running" in line]
            message = crash[0].strip() if crash else (lines[-1] if lines else "")
            self.errors.append({**where, "when": report.when, "message": message})
            self.outcomes["error"] += 1
            self.cells[(model, test)] = {"status": "error", "text": message}
            self._progress(model, test, self.cells[(model, test)])
        elif report.skipped and not records and (model, test) not in self.cells:
            reason = skip_reason(report)
            over = reason.startswith("over budget")
            status = "skipped" if over or "not applicable" not in reason else "not-applicable"
            self.outcomes["over budget" if over else status] += 1
            self.cells[(model, test)] = {"status": status, "text": reason}
            if where.get("property"):
                self.skips[(model, where["property"])] = reason

    def _crashed(self, report: pytest.TestReport) -> dict[str, Any] | None:
        """The model of a test whose worker died under it (SIGKILL, out of memory).

        xdist reports such a test as failed, without anything this plugin attached: the
        model is the test id's `@group` suffix (one group per model under loadgroup), else
        the parameter id in brackets. The crash is a harness error of that model.
        """
        if not report.failed or "crashed while running" not in report.longreprtext:
            return None
        nodeid = report.nodeid
        names = {spec.name for spec in settings(self.config).selected}
        group = nodeid.rsplit("@", 1)[-1] if "@" in nodeid else None
        bracket = nodeid[nodeid.find("[") + 1 : nodeid.rfind("]")] if "[" in nodeid else None
        model = next((m for m in (group, bracket) if m in names), None)
        if model is None:
            return None
        test = nodeid.split("::")[-1].split("[", 1)[0]
        return {"model": model, "test": test}

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
    def verdict(self, exitstatus: int) -> dict[str, Any]:
        failed = sorted({(c["model"], c["property"]) for c in self.findings if c["kind"] in FAILED})
        errors = sorted({(e["model"], e["test"]) for e in self.errors})
        if failed:
            status = "fail"
        elif errors:
            status = "harness-error"
        elif exitstatus != 0:
            # interrupted, a crashed worker, an internal error: never reported as a pass
            status = "incomplete"
        else:
            status = "pass"
        return {
            "status": status,
            "failed_properties": [list(x) for x in failed],
            "harness_errors": [list(x) for x in errors],
        }

    def summary(self) -> str:
        """One line for CI logs: findings and models, then each kind that occurred."""
        n = len(self.findings)
        models = len({f["model"] for f in self.findings} | {e["model"] for e in self.errors})
        order = (
            ("within band", "within band"),
            ("matches baseline", "match baseline"),
            ("measured", "measured (nothing to compare)"),
            ("baseline recorded", "baselines recorded"),
            ("fail", "outside band"),
            ("regressed", "regressed"),
            ("stale baseline", "stale baselines"),
            ("not-applicable", "not applicable"),
            ("over budget", "over budget"),
            ("skipped", "skipped"),
            ("error", "errors"),
        )
        always = ("within band", "matches baseline", "regressed")
        parts = [
            f"{self.outcomes.get(k, 0)} {label}"
            for k, label in order
            if self.outcomes.get(k) or k in always
        ]
        line = f"terrain: {n} findings on {models} model{'s' * (models != 1)}: " + ", ".join(parts)
        if self.fdr.get("tested"):
            line += (
                f"; differs from chance: {self.fdr['survive']} of {self.fdr['tested']} "
                f"survive Benjamini-Hochberg at q = {self.fdr['q']:g}"
            )
        return line

    def reported(self) -> bool:
        return bool(self.findings or self.errors or self.config.getoption("findings"))

    # A wrapper's code after `yield` runs once every plain implementation has (pytest-html's
    # page is written by then); trylast makes this the innermost wrapper, so it also runs
    # before the terminal reporter's wrapper prints the summary that names the pages.
    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Generator[None, None, None]:
        yield
        self.finish(session)

    def finish(self, session: pytest.Session) -> None:
        if not self.loads:  # no xdist: this process did the loading
            for name, count in LOADS.items():
                self.loads[name][worker_id()] = count
        verdict = self.verdict(int(session.exitstatus))
        if (
            session.exitstatus == pytest.ExitCode.TESTS_FAILED
            and verdict["status"] == "harness-error"
        ):
            session.exitstatus = EXIT_HARNESS_ERROR
        verdict["exit_code"] = int(session.exitstatus)
        if not self.reported():
            self.drop_test_log()
            return
        self.fdr = annotate_fdr(self.findings)
        env = environment(self.config.rootpath)  # one record of the run for both files
        try:
            self.write(self.path("findings.json"), verdict, env)
            self.write_page(self.path("index.html"), verdict, env)
            self.keep_test_log()
        except OutputError as e:
            # Checked writable before the run, yet lost since (a full disk, a folder
            # removed): the run must not end as a pass with nothing kept.
            _warn(self.config, str(e))
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = EXIT_HARNESS_ERROR

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.findings or self.errors:
            terminalreporter.write_line(self.summary())

    # -- pytest-html's test log -----------------------------------------------------------
    # pytest-html writes its page at sessionfinish and prints its path at terminal
    # summary. The page goes to a temporary file; here it is moved beside index.html, or,
    # in a run that reported nothing (a unit-test run in a repository that has terrain
    # installed), dropped with pytest-html's terminal line so nothing points at it.
    def html_plugin(self) -> Any:
        for plugin in self.config.pluginmanager.get_plugins():
            if type(plugin).__module__.startswith("pytest_html") and hasattr(
                plugin, "_report_path"
            ):
                return plugin
        return None

    def keep_test_log(self) -> None:
        tmp = self.html_tmp
        if tmp is None or not tmp.is_file():
            return
        target = Path(self.config.stash[_HTML_TARGET])
        write_bytes(target, tmp.read_bytes())
        plugin = self.html_plugin()
        if plugin is not None:
            # its terminal line names the kept page (as a file URI: an absolute path)
            plugin._report_path = target.absolute()

    def drop_test_log(self) -> None:
        if self.html_tmp is None:
            return
        plugin = self.html_plugin()
        if plugin is not None:
            self.config.pluginmanager.unregister(plugin)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.html_tmp is not None:
            shutil.rmtree(self.html_tmp.parent, ignore_errors=True)

    def write_page(self, path: Path, verdict: dict[str, Any], env: dict[str, Any]) -> None:
        models = self.model_table()
        real = [name for name, info in models.items() if info.get("random_init") is False]
        html = render_page(
            title="terrain findings",
            verdict=verdict,
            environment=env,
            models=models,
            research_claims=claim_rows(self.findings, real, self.skips),
            findings=sorted(self.findings, key=lambda r: (r["property"], r["model"])),
            cells=self.cells,
            claims=self.claims,
            evidence=self.evidence,
            errors=self.errors,
            tests_page="tests.html" if self.html_tmp is not None else None,
            fdr=self.fdr,
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
            info["step"] = spec.step  # orders a trajectory (terrain/report/trajectory.py)
            table[spec.name] = info
        return table

    def document(self, verdict: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
        return {
            "schema_version": FINDINGS_SCHEMA_VERSION,
            "verdict": verdict,
            "summary": self.summary(),
            "fdr": self.fdr,
            "environment": env,
            "models": self.model_table(),
            "findings": sorted(self.findings, key=lambda r: (r["model"], r["property"])),
            "errors": self.errors,
        }

    def write(self, path: Path, verdict: dict[str, Any], env: dict[str, Any]) -> None:
        write_text(path, json.dumps(self.document(verdict, env), indent=1, default=str))


def _warn(config: pytest.Config, message: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"terrain: {message}", red=True)


def report_dir(config: pytest.Config) -> Path:
    """--findings's folder, else the ini's terrain_reports, else reports/ in the rootdir."""
    chosen = config.getoption("findings")
    if chosen:
        return Path(chosen).parent
    raw = config.getini("terrain_reports")
    if raw:
        base = config.inipath.parent if config.inipath else config.rootpath
        return base / str(raw)
    return config.rootpath / "reports"


_COLLECTOR = pytest.StashKey[FindingsCollector]()
_HTML_TARGET = pytest.StashKey[str]()


def collector(config: pytest.Config) -> FindingsCollector | None:
    return config.stash.get(_COLLECTOR, None)


def pytest_report_teststatus(
    report: pytest.TestReport, config: pytest.Config
) -> tuple[str, str, str] | None:
    """Passed property tests say how their finding was judged (band, baseline, measured)."""
    if report.when != "call" or not report.passed:
        return None
    records = terrain_data(report).get("findings") or []
    if not records:
        return None
    kinds = {r["kind"] for r in records}
    kind = next((k for k in LETTERS if k in kinds), None)
    if kind is None:
        return None
    letter, word = LETTERS[kind]
    return "passed", letter, word


@pytest.hookimpl(tryfirst=True)  # before pytest-html reads --html
def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return  # workers ship reports and load counts; the controller writes
    plugin = FindingsCollector(config)
    config.stash[_COLLECTOR] = plugin
    config.pluginmanager.register(plugin, "terrain-findings")
    if not config.getoption("htmlpath", None):
        # pytest-html's test log goes to a temporary file first, and into the report
        # folder (as tests.html, beside index.html) only when findings were recorded.
        tmp = Path(tempfile.mkdtemp(prefix="terrain-html-")) / "tests.html"
        config.option.htmlpath = str(tmp)
        config.option.self_contained_html = True
        config.stash[_HTML_TARGET] = str(report_dir(config) / "tests.html")
        plugin.html_tmp = tmp
