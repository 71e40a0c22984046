"""Baseline store: tolerances, sampled-measure slack, stale detection, safe file names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from terrain.baselines import BaselineStore, Tolerance
from terrain.bootstrap import Interval
from terrain.findings import Finding


def finding(
    value: float, model: str = "m", ci: tuple[float, float] | None = None, **kw: Any
) -> Finding:
    interval = Interval(ci[0], ci[1], 0.95, "test") if ci else None
    return Finding(
        model=model,
        property="p",
        statistic="s",
        value=value,
        expected=None,
        null=None,
        interval=interval,
        **kw,
    )


def test_tolerance_is_abs_plus_rel() -> None:
    tol = Tolerance(abs=0.1, rel=0.5)
    assert tol.allows(2.0, 3.1)  # 1.1 <= 0.1 + 0.5 * 2
    assert not tol.allows(2.0, 3.11)
    assert tol.allows(float("nan"), float("nan"))
    assert not tol.allows(1.0, float("nan"))


def test_record_then_compare_round_trip(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path)
    store.record(finding(0.5, tracked={"k": 0.25}), {"fingerprint": "f"}, Tolerance(abs=0.01))
    same = store.compare(finding(0.505, tracked={"k": 0.25}), "m", Tolerance(abs=0.01))
    assert same.status == "match"
    moved = store.compare(finding(0.5, tracked={"k": 0.3}), "m", Tolerance(abs=0.01))
    assert moved.status == "regressed"
    assert [r.key for r in moved.rows if not r.ok] == ["k"]
    assert "k " in moved.table()
    assert "<-- outside" in moved.table()


def test_new_tracked_key_is_a_difference(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path)
    store.record(finding(0.5), {}, Tolerance())
    assert (
        store.compare(finding(0.5, tracked={"extra": 1.0}), "m", Tolerance()).status == "regressed"
    )


def test_sampled_values_compare_within_their_intervals(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path)
    store.record(finding(0.40, ci=(0.38, 0.42)), {}, Tolerance())
    # Half-widths 0.02 and 0.02 combine to 0.028: a shift of 0.025 is noise, 0.035 is not.
    assert store.compare(finding(0.425, ci=(0.405, 0.445)), "m", Tolerance()).status == "match"
    assert store.compare(finding(0.435, ci=(0.415, 0.455)), "m", Tolerance()).status == "regressed"


def test_missing_and_stale(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path)
    assert store.compare(finding(1.0), "m", Tolerance()).status == "missing"
    store.record(finding(1.0, version=1), {}, Tolerance())
    stale = store.compare(finding(1.0, version=2), "m", Tolerance())
    assert stale.status == "stale"
    assert "measure version 1" in stale.message
    doc = json.loads(store.path("m", "p").read_text())
    doc["baseline_format"] = 0
    store.path("m", "p").write_text(json.dumps(doc))
    assert store.compare(finding(1.0, version=1), "m", Tolerance()).status == "stale"


@pytest.mark.parametrize("name", ["./ckpt/step-2000", "<script>", "org/model", "a b"])
def test_model_names_become_safe_distinct_folders(tmp_path: Path, name: str) -> None:
    path = BaselineStore(tmp_path).path(name, "p")
    assert path.parent.parent == tmp_path
    assert "/" not in path.parent.name
    assert "<" not in path.parent.name
    assert BaselineStore(tmp_path).path(name + "x", "p") != path
