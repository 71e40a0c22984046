"""Turning a finding's verdict into a pytest outcome, with the full one-line description."""

from __future__ import annotations

import pytest

from terrain.findings import Finding


def check(finding: Finding) -> None:
    """Pass inside the expectation, fail outside it, skip (value recorded) when there is none."""
    __tracebackhide__ = True
    if finding.verdict == "no-expectation":
        pytest.skip(f"measured, not asserted: {finding.describe()}")
    if finding.verdict == "fail":
        pytest.fail(finding.describe(), pytrace=False)
