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
    if not null:
        return str((record.get("details") or {}).get("null_note") or "—")
    spread = ""
    if null.get("sd") is not None:
        spread = f" ± {fmt(null['sd'])} (sd over {len(null.get('samples') or ())} seeds)"
    return f"{fmt(null['value'])}{spread} ({null['kind']})"


def chance_text(record: Mapping[str, Any]) -> str:
    """z, p and the run's q-value, and whether the claim survives the correction."""
    sig = record.get("significance")
    if not sig or sig.get("p") is None:
        return "not tested (no null with a spread or law)"
    parts = [] if sig.get("z") is None else [f"z = {fmt(sig['z'])}"]
    parts.append(f"p = {fmt(sig['p'])}")
    q = record.get("q_value")
    if q is not None:
        parts.append(f"q = {fmt(q)}")
        parts.append("survives BH" if record.get("fdr_survives") else "does not survive BH")
    return ", ".join(parts)


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
