"""pytest-html columns (model, property, value, expected, null, CI, verdict).

The models' provenance and census are on the findings page (plugins/collector.py)."""

from __future__ import annotations

from typing import Any

import pytest

from plugins.recording import FINDING, WHERE, decoded
from terrain.report.html import (
    cell,
    details_block,
    expected_text,
    fmt,
    interval_text,
    null_text,
)

COLUMNS = ("Model", "Property", "Value", "Expected", "Null", "CI", "Verdict")


def pytest_html_report_title(report: Any) -> None:
    report.title = "terrain findings"


def pytest_html_results_table_header(cells: list[str]) -> None:
    cells[2:2] = [f'<th class="col-terrain">{c}</th>' for c in COLUMNS]


def pytest_html_results_table_row(
    report: pytest.TestReport | pytest.CollectReport, cells: list[str]
) -> None:
    records = decoded(report, FINDING)
    where: dict[str, str] = next(iter(decoded(report, WHERE)), {})
    if not records:
        values = [
            where.get("model", "—"),
            where.get("test", "—"),
            "—",
            "—",
            "—",
            "—",
            report.outcome,
        ]
    else:
        record = records[0]
        values = [
            record["model"] + (" [random init]" if record["random_init"] else ""),
            record["property"],
            fmt(record["value"]),
            expected_text(record),
            null_text(record),
            interval_text(record),
            record["verdict"],
        ]
    cells[2:2] = [cell(v) for v in values]


def pytest_html_results_table_html(report: pytest.TestReport, data: list[str]) -> None:
    data.extend(details_block(record) for record in decoded(report, FINDING))
