"""The findings page's layout: the matrix grows down (a row per property), not sideways."""

from __future__ import annotations

import re
from typing import Any

from terrain.report.page import render_page


def _page(models: list[str], props: list[str], missing: tuple[str, str] | None = None) -> str:
    findings = [
        {"model": m, "test": f"test_{p}", "property": p, "value": 0.5}
        for m in models
        for p in props
    ]
    cells = {(m, f"test_{p}"): {"status": "pass", "text": "0.5"} for m in models for p in props}
    if missing is not None:
        del cells[missing]
    info: dict[str, Any] = {m: {"random_init": m.endswith("-random"), "loads": {}} for m in models}
    return render_page(
        title="t",
        verdict={"status": "pass", "exit_code": 0},
        environment={"created": "now", "git_commit": None, "packages": {}},
        models=info,
        research_claims=[],
        findings=findings,
        cells=cells,
        claims={},
        evidence={},
        errors=[],
        tests_page=None,
    )


def _matrix(page: str) -> str:
    match = re.search(r'<table class="matrix">(.*?)</table>', page, re.S)
    assert match, "the page has no findings matrix"
    return match.group(1)


def test_matrix_has_a_row_per_property_and_a_column_per_model() -> None:
    props = [f"prop_{i:02d}" for i in range(49)]
    matrix = _matrix(_page(["minilm", "smollm2-135m"], props))
    rows = re.findall(r"<tr>(.*?)</tr>", matrix, re.S)
    assert len(rows) == 1 + len(props)
    header = re.findall(r"<th>(.*?)</th>", rows[0], re.S)
    assert len(header) == 3
    assert "minilm" in header[1]
    assert "smollm2-135m" in header[2]
    for row, prop in zip(rows[1:], props, strict=True):
        assert prop in row
        assert row.count("<td") == 2


def test_a_missing_cell_is_a_dash_in_its_own_column() -> None:
    matrix = _matrix(_page(["a", "b-random"], ["x", "y"], missing=("a", "test_y")))
    assert "[random init]" in matrix
    rows = re.findall(r"<tr>(.*?)</tr>", matrix, re.S)
    cells_of_y = re.findall(r"<td[^>]*>(.*?)</td>", rows[2], re.S)
    assert cells_of_y[0] == "—"
    assert cells_of_y[1].startswith("pass")
