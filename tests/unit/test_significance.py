"""Tests against the null and the run's Benjamini–Hochberg control (terrain.significance)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats

from terrain.null.model import LARGE_NULL_SEEDS, NULL_SEEDS, NullModel, plan_for
from terrain.significance import against_null, control_fdr
from terrain.workpool import MemoryBudget

CONFIGS = Path(__file__).resolve().parents[2] / "fixtures" / "configs"


def test_a_value_from_the_null_is_rejected_at_the_nominal_rate() -> None:
    """Calibration: value and k = 5 seeds all from one normal law; p < 0.05 must occur in
    5% of draws (binomial 99.9% band over 4000 draws), so the test is neither liberal nor
    useless."""
    rng = np.random.default_rng(7)
    draws = 4000
    rejected = 0
    for _ in range(draws):
        x = rng.normal(3.0, 0.2, size=6)
        sig = against_null(float(x[0]), [float(v) for v in x[1:]])
        assert sig is not None
        assert sig.p is not None
        rejected += sig.p < 0.05
    low, high = stats.binom.ppf([0.0005, 0.9995], draws, 0.05)
    assert low <= rejected <= high, rejected


def test_a_value_far_from_the_null_is_a_discovery() -> None:
    sig = against_null(10.0, [0.0, 0.1, -0.1, 0.05, -0.05])
    assert sig is not None
    assert sig.p is not None
    assert sig.z is not None
    assert sig.p < 1e-4
    assert sig.z > 50
    assert sig.p_empirical == pytest.approx(1 / 6)  # the best rank 5 seeds allow


def test_what_is_not_tested() -> None:
    assert against_null(1.0, [2.0]) is None  # one seed: no spread
    assert against_null(0.5, [0.5, 0.5, 0.5]) is None  # fixed by the config
    fixed = against_null(0.7, [0.5, 0.5, 0.5])
    assert fixed is not None
    assert fixed.p == pytest.approx(1 / 4)
    exact = against_null(0.3, [], analytic_p=1e-6, analytic_method="law")
    assert exact is not None
    assert exact.p == 1e-6
    assert exact.method == "law"


def test_benjamini_hochberg_q_values_by_hand() -> None:
    """Sorted p 0.01, 0.03, 0.04, 0.5 (m = 4): p·m/rank = 0.04, 0.06, 0.0533, 0.5, then the
    running minimum from the top: 0.04, 0.0533, 0.0533, 0.5."""
    records: list[dict[str, Any]] = [
        {"significance": {"p": 0.01}},
        {"significance": {"p": 0.04}},
        {"significance": None},
        {"significance": {"p": 0.03}},
        {"significance": {"p": 0.5}},
    ]
    out = control_fdr(records)
    q = out["qvalues"]
    assert q[2] is None
    assert q[0] == pytest.approx(0.04)
    assert q[1] == pytest.approx(0.16 / 3)
    assert q[3] == pytest.approx(0.16 / 3)
    assert q[4] == pytest.approx(0.5)
    assert (out["tested"], out["survive"]) == (4, 1)


def test_a_null_never_uses_the_replica_seed() -> None:
    config = json.loads((CONFIGS / "llama-tiny.json").read_text())
    assert 0 not in plan_for(config, 1000).seeds
    assert plan_for(config, 1000).seeds == NULL_SEEDS
    assert len(NULL_SEEDS) == 5
    assert plan_for(config, 10**10).seeds == LARGE_NULL_SEEDS
    with pytest.raises(ValueError, match="seed 0"):
        plan_for(config, 1000, seeds=(0, 1))


def test_null_seeds_differ_from_each_other(tmp_path: Path) -> None:
    """Seed-to-seed spread: every seed's token table is its own draw."""
    config = json.loads((CONFIGS / "llama-tiny.json").read_text())
    plan = plan_for(config, 1000)
    tables = [
        NullModel(
            "llama-tiny",
            plan,
            seed,
            family="llama",
            device="cpu",
            dtype=torch.float32,
            budget=MemoryBudget(1 << 30),
            cache_dir=tmp_path,
        ).token_table()
        for seed in plan.seeds[:3]
    ]
    for i in range(len(tables)):
        for j in range(i):
            assert not bool((tables[i] == tables[j]).all())
    assert all(math.isfinite(float(t.std())) for t in tables)
