"""How the findings collector (plugins/collector.py) reads outcomes: the matrix cell of a
measured finding, the reason of a skipped test, and the run's Benjamini–Hochberg
annotation of its "differs from chance" claims (terrain.significance).
"""

from __future__ import annotations

from typing import Any

import pytest

from terrain.report.html import fmt
from terrain.significance import control_fdr

__all__ = ["annotate_fdr", "finding_cell", "skip_reason"]


def annotate_fdr(findings: list[dict[str, Any]]) -> dict[str, Any]:
    """Benjamini–Hochberg over the run's "differs from chance" claims: each tested record
    gets its `q_value` and `fdr_survives`; the summary counts them (terrain.significance)."""
    result = control_fdr(findings)
    for record, q in zip(findings, result.pop("qvalues"), strict=True):
        record["q_value"] = q
        record["fdr_survives"] = None if q is None else bool(q <= result["q"])
    result["not_surviving"] = [
        [r["model"], r["property"]] for r in findings if r["fdr_survives"] is False
    ]
    return result


def finding_cell(record: dict[str, Any]) -> dict[str, Any]:
    """Matrix cell of a measured finding: pass, fail, regressed, stale, baseline, measured."""
    status = {
        "within band": "pass",
        "matches baseline": "baseline",
        "measured": "measured",
        "baseline recorded": "measured",
        "fail": "fail",
        "regressed": "regressed",
        "stale baseline": "stale",
    }[record["kind"]]
    return {"status": status, "text": fmt(record["value"])}


def skip_reason(report: pytest.TestReport) -> str:
    """Why pytest skipped the test (its skip message, without the "Skipped: " prefix)."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)
