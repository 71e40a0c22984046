"""Turning a finding's verdict into a pytest outcome, with the full one-line description."""

from __future__ import annotations

import pytest

from terrain.findings import Finding


def check(finding: Finding) -> None:
    """Fail outside the expectation. A finding without one passes here: it is compared with
    its baseline (terrain/plugins/baselines.py), or it is measured with nothing to compare."""
    __tracebackhide__ = True
    if finding.verdict == "fail":
        pytest.fail(finding.describe(), pytrace=False)
