"""Chance claims, end to end: a planted signal is discovered, untouched replicas are not.

A llama-tiny replica with layer 0's W_Q replaced by a rank-one matrix (same Frobenius norm)
must be flagged by the spectra properties against its five random-init null seeds and
survive the run's Benjamini–Hochberg correction. Twenty untouched replicas of other seeds,
each its own run against the same nulls, must produce no more than the expected share of
false discoveries: BH at q = 0.05 with every claim null keeps the chance of any discovery
in a run at or below 5%, so four or more runs of 20 with one (binomial 5%: P ≈ 1.6%) fail.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from terrain.battery import BatteryResult
from terrain.config import ModelSpec
from terrain.model import LoadedModel, load_model
from terrain.property import NotApplicableError, declarations
from terrain.significance import FDR_Q, control_fdr
from terrain.sources import SourceContext
from terrain.synthetic import random_init_replica
from tests.conftest import CONFIGS

CONFIG = json.loads((CONFIGS / "llama-tiny.json").read_text())
Q0 = "model.layers.0.self_attn.q_proj.weight"
RUNS = 20


def _records(model: LoadedModel) -> list[dict[str, Any]]:
    out = []
    for prop in declarations():
        if prop.kind != "weights":
            continue
        try:
            out.append(prop.evaluate(model, None).finding.as_record())
        except NotApplicableError:
            continue
    return out


@pytest.fixture(scope="module")
def shared_nulls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every run uses the nulls of the first model that asks (they depend only on the
    config, and computing them once keeps twenty runs cheap)."""
    cache: list[BatteryResult] = []
    original = LoadedModel.null_batteries

    def once(self: LoadedModel) -> list[BatteryResult]:
        if not cache:
            cache.extend(original(self))
        return list(cache)

    mp = pytest.MonkeyPatch()
    mp.setattr(LoadedModel, "null_batteries", once)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield tmp_path_factory.mktemp("planted")
    finally:
        torch.set_num_threads(before)
        mp.undo()


def _load(name: str, folder: Path, root: Path) -> LoadedModel:
    ctx = SourceContext((CONFIGS,), root / "cache")
    return load_model(ModelSpec(name=name, source=str(folder)), ctx, device="cpu")


def test_a_low_rank_query_is_discovered(shared_nulls: Path) -> None:
    root = shared_nulls
    replica = random_init_replica(CONFIG, seed=0, cache_dir=root / "cache", label="llama-tiny")
    planted = root / "planted"
    shutil.copytree(replica, planted)
    weights = next(planted.glob("*.safetensors"))
    tensors = load_file(weights)
    w = tensors[Q0]
    gen = torch.Generator().manual_seed(4)
    u = torch.randn(w.shape[0], 1, generator=gen, dtype=torch.float64)
    v = torch.randn(1, w.shape[1], generator=gen, dtype=torch.float64)
    rank_one = u @ v
    tensors[Q0] = (rank_one * (w.double().norm() / rank_one.norm())).to(w.dtype).contiguous()
    save_file(tensors, weights, metadata={"format": "pt"})
    records = _records(_load("llama-tiny-planted", planted, root))
    fdr = control_fdr(records)
    by_name = {r["property"]: (r, q) for r, q in zip(records, fdr["qvalues"], strict=True)}
    record, q = by_name["spectral_stable_rank_min"]
    print(
        f"planted rank-one W_Q: {record['value']:.4g} vs null {record['null']['value']:.4g} ± {record['null']['sd']:.3g}, {record['significance']}, q {q}"
    )
    assert record["significance"]["z"] < -10, record["significance"]
    assert q is not None
    assert q <= FDR_Q, (record["significance"], q)


def _plant_spikes(folder: Path, names: list[str], seed: int) -> None:
    """Add a rank-two signal whose singular values are 6x the bulk's edge to each tensor."""
    weights = next(folder.glob("*.safetensors"))
    tensors = load_file(weights)
    gen = torch.Generator().manual_seed(seed)
    for name in names:
        w = tensors[name].double()
        rows, cols = w.shape
        edge = w.std() * (rows**0.5 + cols**0.5)  # the largest singular value of the noise
        u, _ = torch.linalg.qr(torch.randn(rows, 2, generator=gen, dtype=torch.float64))
        v, _ = torch.linalg.qr(torch.randn(cols, 2, generator=gen, dtype=torch.float64))
        tensors[name] = (w + 6 * edge * u @ v.T).to(tensors[name].dtype).contiguous()
    save_file(tensors, weights, metadata={"format": "pt"})


def test_esd_spikes_fails_on_planted_spikes_and_passes_untouched(shared_nulls: Path) -> None:
    """The negative control of esd_spikes' random-init band (at most 2 of 14 matrices):
    spikes planted in 4 projections must fail it; the untouched replica must pass."""
    root = shared_nulls
    replica = random_init_replica(CONFIG, seed=0, cache_dir=root / "cache", label="llama-tiny")
    planted = root / "spiked"
    shutil.copytree(replica, planted)
    names = [f"model.layers.{i}.self_attn.{p}_proj.weight" for i in (0, 1) for p in ("q", "o")]
    _plant_spikes(planted, names, seed=7)
    spikes = declarations().get("esd_spikes")
    clean = spikes.evaluate(_load("llama-tiny", replica, root), None).finding
    spiked = spikes.evaluate(_load("llama-tiny-spiked", planted, root), None).finding
    print(f"esd_spikes: untouched {clean.value:.3f}, planted {spiked.value:.3f}, {spiked.expected}")
    assert clean.random_init  # the random-init band applies to both
    assert spiked.random_init
    assert clean.verdict == "pass", clean.as_record()
    assert clean.n is not None
    assert spiked.value >= len(names) / clean.n
    assert spiked.verdict == "fail", spiked.as_record()


def test_untouched_replicas_make_few_false_discoveries(shared_nulls: Path) -> None:
    root = shared_nulls
    runs_with_discovery = 0
    discoveries = tested = 0
    for seed in range(100, 100 + RUNS):
        folder = random_init_replica(
            CONFIG, seed=seed, cache_dir=root / "cache", label=f"llama-tiny-{seed}"
        )
        fdr = control_fdr(_records(_load(f"llama-tiny-{seed}", folder, root)))
        tested += fdr["tested"]
        discoveries += fdr["survive"]
        runs_with_discovery += fdr["survive"] > 0
    print(
        f"untouched replicas: {discoveries} discoveries of {tested} tested claims "
        f"({discoveries / tested:.3%}); {runs_with_discovery} of {RUNS} runs with any"
    )
    assert tested >= RUNS * 10  # the runs did test their claims
    assert runs_with_discovery <= 3, (discoveries, tested, runs_with_discovery)


def test_esd_correlation_traps_fails_on_planted_huge_entries_and_passes_untouched(
    shared_nulls: Path,
) -> None:
    """The negative control of the traps' random-init band: a few huge entries in 4
    projections survive any shuffle (each adds about w² to λ_max) and must fail it."""
    root = shared_nulls
    replica = random_init_replica(CONFIG, seed=0, cache_dir=root / "cache", label="llama-tiny")
    planted = root / "trapped"
    shutil.copytree(replica, planted)
    weights = next(planted.glob("*.safetensors"))
    tensors = load_file(weights)
    names = [f"model.layers.{i}.self_attn.{p}_proj.weight" for i in (0, 1) for p in ("q", "o")]
    for name in names:
        w = tensors[name].clone()
        edge = float(w.double().std()) * (w.shape[0] ** 0.5 + w.shape[1] ** 0.5)
        w.view(-1)[:3] = 3 * edge  # three entries far above the bulk's edge in σ
        tensors[name] = w.contiguous()
    save_file(tensors, weights, metadata={"format": "pt"})
    traps = declarations().get("esd_correlation_traps")
    clean = traps.evaluate(_load("llama-tiny", replica, root), None).finding
    trapped = traps.evaluate(_load("llama-tiny-trapped", planted, root), None).finding
    print(f"traps: untouched {clean.value:.3f}, planted {trapped.value:.3f}, {trapped.expected}")
    assert clean.verdict == "pass", clean.as_record()
    assert clean.n is not None
    assert trapped.value >= len(names) / clean.n
    assert trapped.verdict == "fail", trapped.as_record()
