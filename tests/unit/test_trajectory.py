"""Trajectories across checkpoints, from findings data (terrain/report/trajectory.py).

The records are made by the real types (Finding.as_record, Comparison.as_record), as the
plugins make them, so that these tests read what a run writes into findings.json.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from PIL import Image

from terrain.baselines import Comparison, Row, Status, Tolerance
from terrain.findings import Finding, Null
from terrain.report.page import render_page
from terrain.report.trajectory import Checkpoint, trajectories
from terrain.report.trajectory_plots import tick_labels

MINILM = {
    "family": "bert",
    "tensors": 101,
    "claimed": 101,
    "unclaimed": {},
    "parameters": 22_713_216,
    "layers": {"encoder": 6},
    "heads": 12,
    "kv_heads": 12,
    "d_model": 384,
    "d_head": 32,
    "d_ff": 1536,
    "by_role": {"encoder.q.weight": {"tensors": 6, "parameters": 884_736}},
}
WIDER = {**MINILM, "d_model": 768, "parameters": 90_000_000}
LLAMA = {**MINILM, "family": "llama"}
TOLERANCE = Tolerance(abs=0.01)
# Per checkpoint: q_sparsity moves (one layer's W_Q scaled), the cosines do not.
Q_SPARSITY = {"base": 0.781, "x3": 0.70, "x5": 0.66}
CROSSLAYER = {"base": 0.012, "x3": 0.012, "x5": 0.0121}


def info(census: Mapping[str, Any] | None = MINILM, step: int | None = None) -> dict[str, Any]:
    """A model's entry in findings.json's `models`."""
    out: dict[str, Any] = {"random_init": False, "loads": {}, "step": step}
    if census is not None:
        out["census"] = dict(census)
    return out


def record(
    model: str, prop: str, value: float, baseline_value: float | None = None, of: str = "base"
) -> dict[str, Any]:
    """A finding's record as the plugins write it, compared with `baseline_value` when given."""
    finding = Finding(
        model, prop, f"{prop} statistic", value, None, Null.of([0.9, 0.92, 0.91], "random init")
    )
    out = {**finding.as_record(), "test": f"test_{prop}", "kind": "measured"}
    if baseline_value is not None:
        ok = TOLERANCE.allows(baseline_value, value)
        row = Row("value", baseline_value, value, "abs 0.01 + rel 0", ok)
        status: Status = "match" if ok else "regressed"
        out["baseline"] = Comparison(model, prop, of, status, (row,)).as_record()
        out["kind"] = "matches baseline" if ok else "regressed"
    return out


def run_findings(models: Sequence[str], compared: bool = True) -> list[dict[str, Any]]:
    """q_sparsity and crosslayer_corr on every model (compared with base's baseline), and a
    property that is not a number on one checkpoint."""
    out = []
    for m in models:
        for prop, values in (("q_sparsity", Q_SPARSITY), ("crosslayer_corr", CROSSLAYER)):
            out.append(record(m, prop, values[m], values["base"] if compared else None))
        out.append(record(m, "simplex_cv", math.nan if m == "x5" else 0.41))
    return out


def page(models: Mapping[str, Mapping[str, Any]], findings: Sequence[Mapping[str, Any]]) -> str:
    return render_page(
        title="t",
        verdict={"status": "fail", "exit_code": 1},
        environment={"created": "now", "git_commit": None, "packages": {}},
        models=models,
        research_claims=[],
        findings=findings,
        cells={(f["model"], f["test"]): {"status": "measured", "text": "x"} for f in findings},
        claims={},
        evidence={},
        errors=[],
        tests_page=None,
    )


def section(html: str) -> str:
    """The page's Trajectory section ('' when it has none)."""
    match = re.search(r'<h2 id="trajectory">(.*?)(?=<h2 )', html, re.S)
    return match.group(1) if match else ""


THREE = {"base": info(), "x3": info(), "x5": info()}


def test_three_checkpoints_plot_every_scalar_property_beside_its_null() -> None:
    (t,) = trajectories(THREE, run_findings(list(THREE)))
    assert [c.name for c in t.checkpoints] == ["base", "x3", "x5"]
    assert [c.at for c in t.checkpoints] == [1, 2, 3]  # positions: no steps
    assert not t.by_step
    assert [s.property for s in t.series] == ["crosslayer_corr", "q_sparsity"]
    assert t.not_plotted == ("simplex_cv",)  # NaN on x5
    q = t.series[1]
    assert q.values == (0.781, 0.70, 0.66)
    assert q.null_means == pytest.approx((0.91,) * 3)
    assert q.null_sds == pytest.approx((0.01,) * 3)
    assert q.departed == (False, True, True)


def test_the_page_embeds_one_plot_per_scalar_property_and_nothing_external() -> None:
    html = page(THREE, run_findings(list(THREE)))
    found = section(html)
    assert found.startswith("Trajectory</h2>")
    images = re.findall(r'<img alt="trajectory of ([^"]+)" src="([^"]+)"', found)
    assert [prop for prop, _ in images] == ["crosslayer_corr", "q_sparsity"]
    for _, src in images:
        assert src.startswith("data:image/png;base64,")
        png = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert png.mode == "P"  # palette-quantised like every plot of the page
    assert "Not plotted (not a finite number on every checkpoint): simplex_cv" in found
    assert "http://" not in html
    assert "https://" not in html


def test_the_table_lists_the_checkpoints_whose_value_left_the_first_ones_tolerance() -> None:
    (t,) = trajectories(THREE, run_findings(list(THREE)))
    assert [(d.model, d.property, d.at, d.baseline_of) for d in t.departures] == [
        ("x3", "q_sparsity", 2, "base"),
        ("x5", "q_sparsity", 3, "base"),
    ]
    assert t.departures[0].difference == pytest.approx(0.70 - 0.781)
    assert t.compared == 6
    rows = re.findall(
        r'<tr class="regressed">(.*?)</tr>',
        section(page(THREE, run_findings(list(THREE)))),
        re.S,
    )
    assert len(rows) == 2
    assert "<td>x3</td>" in rows[0]
    assert "q_sparsity" in rows[0]
    assert "abs 0.01 + rel 0" in rows[0]


def test_the_table_says_when_nothing_left_or_nothing_was_compared() -> None:
    within = [r for r in run_findings(list(THREE)) if r["property"] != "q_sparsity"]
    assert "stayed within their tolerance" in section(page(THREE, within))
    uncompared = run_findings(list(THREE), compared=False)
    assert trajectories(THREE, uncompared)[0].compared == 0
    assert "No finding of these checkpoints was compared" in section(page(THREE, uncompared))


def test_checkpoints_are_ordered_by_step_when_every_one_has_one() -> None:
    # Given out of order (the command line's order is the mapping's order).
    models = {"x5": info(step=2000), "base": info(step=0), "x3": info(step=1000)}
    (t,) = trajectories(models, run_findings(list(models)))
    assert [(c.name, c.at) for c in t.checkpoints] == [("base", 0), ("x3", 1000), ("x5", 2000)]
    assert t.by_step
    assert t.series[1].values == (0.781, 0.70, 0.66)
    assert [d.at for d in t.departures] == [1000, 2000]
    assert "ordered by step" in section(page(models, run_findings(list(models))))


def test_without_a_step_on_every_checkpoint_the_order_given_holds() -> None:
    models = {"x5": info(step=2000), "base": info(), "x3": info(step=1000)}
    (t,) = trajectories(models, run_findings(list(models)))
    assert [(c.name, c.at, c.step) for c in t.checkpoints] == [
        ("x5", 1, 2000),
        ("base", 2, None),
        ("x3", 3, 1000),
    ]
    assert not t.by_step


def test_equal_steps_keep_the_order_given() -> None:
    models = {"b": info(step=5), "a": info(step=5), "c": info(step=1)}
    (t,) = trajectories(models, [])
    assert [c.name for c in t.checkpoints] == ["c", "b", "a"]


def test_only_checkpoints_of_one_architecture_share_a_trajectory() -> None:
    models = {
        "base": info(),
        "wide-1": info(WIDER),
        "llama-lookalike": info(LLAMA),  # the same shape fields, another family
        "x3": info(),
        "wide-2": info(WIDER),
    }
    found = trajectories(models, [])
    assert [[c.name for c in t.checkpoints] for t in found] == [
        ["base", "x3"],
        ["wide-1", "wide-2"],
    ]
    assert [t.family for t in found] == ["bert", "bert"]


def test_a_lone_model_of_its_architecture_gets_no_section() -> None:
    models = {"base": info(), "llama": info(LLAMA)}
    findings = run_findings(["base"])
    assert trajectories(models, findings) == []
    html = page(models, findings)
    assert 'id="trajectory"' not in html
    assert section(html) == ""


def test_replicas_and_models_that_were_not_measured_join_no_trajectory() -> None:
    replica = {**info(), "random_init": True}
    models = {"base": info(), "base-random": replica, "unloaded": info(census=None)}
    assert trajectories(models, []) == []


def test_a_saved_findings_document_gives_the_same_trajectories() -> None:
    models = {"x5": info(step=2000), "base": info(step=0), "x3": info(step=1000)}
    findings = run_findings(list(models))
    saved = json.loads(json.dumps({"models": models, "findings": findings}))  # NaN as NaN
    again = trajectories(saved["models"], saved["findings"])
    first = trajectories(models, findings)
    assert [t.checkpoints for t in again] == [t.checkpoints for t in first]
    assert [t.departures for t in again] == [t.departures for t in first]
    assert [t.series for t in again] == [t.series for t in first]


def test_tick_labels_are_short_literal_and_unambiguous() -> None:
    points = [
        Checkpoint("/runs/a/step-1000", 1000, 1000),
        Checkpoint("org/price$5$", 2000, 2000),
        Checkpoint("x" * 40, 3000, 3000),
    ]
    labels = tick_labels(points, by_step=True)
    assert labels[0] == "step-1000\nstep 1000"
    assert labels[1] == "price\\$5\\$\nstep 2000"  # shown as written, not as mathematics
    assert labels[2].startswith("…")
    assert len(labels[2].split("\n")[0]) == 22
    same = [Checkpoint("/a/ckpt", None, 1), Checkpoint("/b/ckpt", None, 2)]
    assert tick_labels(same, by_step=False) == ["#1 ckpt", "#2 ckpt"]


def test_names_with_markup_are_escaped_in_the_section() -> None:
    hostile = "<img src=x onerror=alert(1)>"
    models = {"base": info(), hostile: info()}
    findings = [
        {**r, "model": hostile if r["model"] == "x3" else r["model"]}
        for r in run_findings(["base", "x3"])
    ]
    found = section(page(models, findings))
    assert "Trajectory</h2>" in found
    assert hostile not in found
    assert "&lt;img src=x onerror=alert(1)&gt;" in found
