"""The findings page: one self-contained HTML file (CSS inline, plots as data URIs).

Rendered by Jinja2 with autoescaping on, so every string from a model, config or file
is escaped; only the base64 PNGs produced by terrain.report.plots go in unescaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from terrain.atomic import write_text
from terrain.report.html import chance_text, expected_text, fmt, interval_text, null_text
from terrain.report.trajectory import Trajectory, trajectories
from terrain.report.trajectory_plots import TrajectoryPlot, plots

STATUSES = (
    "pass",
    "baseline",
    "fail",
    "regressed",
    "stale",
    "measured",
    "not-applicable",
    "skipped",
    "error",
)


@dataclass(frozen=True)
class PropertySection:
    test: str
    name: str
    claim: str
    rows: list[dict[str, Any]]
    evidence: list[dict[str, str]]
    gauge: str = ""  # the declaration's gauge label and its note


@dataclass(frozen=True)
class TrajectorySection:
    trajectory: Trajectory
    plots: list[TrajectoryPlot]  # one per series


def trajectory_sections(
    models: Mapping[str, Mapping[str, Any]], findings: Sequence[Mapping[str, Any]]
) -> list[TrajectorySection]:
    """The run's trajectories (terrain.report.trajectory) with their plots."""
    return [TrajectorySection(t, plots(t)) for t in trajectories(models, findings)]


def gauge_text(prop: str) -> str:
    """The property's gauge label from its declaration ('' for a name it does not know)."""
    from terrain.property import declarations

    registry = declarations()
    if prop not in registry:
        return ""
    decl = registry.get(prop)
    return f"{decl.gauge.value}: {decl.gauge_note}" if decl.gauge_note else decl.gauge.value


def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("terrain.report", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = fmt
    return env


def render_page(
    *,
    title: str,
    verdict: Mapping[str, Any],
    environment: Mapping[str, Any],
    models: Mapping[str, Mapping[str, Any]],
    research_claims: Sequence[Mapping[str, Any]],
    findings: Sequence[Mapping[str, Any]],
    cells: Mapping[tuple[str, str], Mapping[str, Any]],
    claims: Mapping[str, str],
    evidence: Mapping[tuple[str, str], Sequence[Mapping[str, str]]],
    errors: Sequence[Mapping[str, Any]],
    tests_page: str | None,
    fdr: Mapping[str, Any] | None = None,
) -> str:
    tests = sorted({t for _, t in cells}, key=_test_order(findings))
    names = {f["test"]: f["property"] for f in findings}
    sections = []
    for test in tests:
        rows = [
            {
                **f,
                "expected_text": expected_text(f),
                "null_text": null_text(f),
                "interval_text": interval_text(f),
                "chance_text": chance_text(f),
                "cell": cells.get((f["model"], test), {}),
            }
            for f in findings
            if f["test"] == test
        ]
        plots = [{"model": m, **e} for m in models for e in evidence.get((m, test), [])]
        sections.append(
            PropertySection(
                test,
                names.get(test, test),
                claims.get(test, ""),
                rows,
                plots,
                gauge_text(names.get(test, test)),
            )
        )
    template = _env().get_template("findings.html.j2")
    return template.render(
        title=title,
        verdict=verdict,
        environment=environment,
        models=models,
        research_claims=research_claims,
        tests=tests,
        names=names,
        cells=cells,
        sections=sections,
        errors=errors,
        statuses=STATUSES,
        tests_page=tests_page,
        fdr=fdr or {},
        trajectories=trajectory_sections(models, findings),
    )


def _test_order(findings: Sequence[Mapping[str, Any]]) -> Any:
    order = {
        f["test"]: i
        for i, f in reversed(list(enumerate(sorted(findings, key=lambda f: f["property"]))))
    }
    return lambda t: (order.get(t, len(order)), t)


def write_page(path: Path, html: str) -> None:
    """Write the page atomically (terrain/atomic.py)."""
    write_text(path, html)
