"""HTML fragments for the findings report. Every string from a model, config or file is escaped."""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from typing import Any


def cell(value: object) -> str:
    return f'<td class="col-terrain">{escape(str(value))}</td>'


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def expected_text(record: Mapping[str, Any]) -> str:
    exp = record.get("expected")
    if not exp:
        return "none (not asserted)"
    low, high = exp.get("low"), exp.get("high")
    if low is not None and high is not None:
        return f"[{fmt(low)}, {fmt(high)}]"
    return f"≤ {fmt(high)}" if high is not None else f"≥ {fmt(low)}"


def null_text(record: Mapping[str, Any]) -> str:
    null = record.get("null")
    return f"{fmt(null['value'])} ({null['kind']})" if null else "—"


def interval_text(record: Mapping[str, Any]) -> str:
    ci = record.get("interval")
    if not ci:
        return "—"
    return f"[{fmt(ci['low'])}, {fmt(ci['high'])}] ({ci['confidence']:.0%})"


def details_block(record: Mapping[str, Any]) -> str:
    """The finding's full record, as escaped JSON under a heading."""
    body = escape(json.dumps(record, indent=1, default=str))
    title = escape(f"{record['model']} · {record['property']}: {record['statistic']}")
    return f"<details><summary>{title}</summary><pre>{body}</pre></details>"
