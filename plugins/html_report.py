"""pytest-html columns (model, property, value, expected, null, CI, outcome).

The models' provenance and census are on the findings page (plugins/collector.py)."""

from __future__ import annotations

from html import escape
from typing import Any

import pytest

from terrain.report.html import (
    cell,
    details_block,
    expected_text,
    fmt,
    interval_text,
    null_text,
)

from .recording import terrain_data

_TEST_ID_CELL = '<td class="col-testId">'
COLUMNS = ("Model", "Property", "Value", "Expected", "Null", "CI", "Outcome")


def pytest_html_report_title(report: Any) -> None:
    report.title = "terrain findings"


def pytest_html_results_table_header(cells: list[str]) -> None:
    cells[2:2] = [f'<th class="col-terrain">{c}</th>' for c in COLUMNS]


def pytest_html_results_table_row(
    report: pytest.TestReport | pytest.CollectReport, cells: list[str]
) -> None:
    data = terrain_data(report)
    records = data.get("findings") or []
    where: dict[str, str] = data.get("where", {})
    if not records:
        values = [where.get("model", "—"), where.get("test", "—"), "—", "—", "—", "—"]
        values.append(report.outcome)
    else:
        record = records[0]
        values = [
            record["model"] + (" [random init]" if record["random_init"] else ""),
            record["property"],
            fmt(record["value"]),
            expected_text(record),
            null_text(record),
            interval_text(record),
            record["kind"],
        ]
    cells[2:2] = [cell(v) for v in values]
    # pytest-html puts the node id in its cell unescaped, and its page sets each cell as
    # HTML: a model or tensor name with markup in a test id would be live there.
    for i, html in enumerate(cells):
        if html.startswith(_TEST_ID_CELL) and html.endswith("</td>"):
            raw = html[len(_TEST_ID_CELL) : -len("</td>")]
            cells[i] = f"{_TEST_ID_CELL}{escape(raw)}</td>"


def pytest_html_results_table_html(report: pytest.TestReport, data: list[str]) -> None:
    records = terrain_data(report).get("findings") or []
    data.extend(details_block(record) for record in records)
