"""Correlation traps in the battery's pass: every projection of a small model, seeded from
its tensor's name, equal to the measure applied directly; wide matrices on sampled layers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import terrain.battery.stream as stream_module
from terrain.anatomy import Anatomy, build_anatomy
from terrain.battery import BatteryResult, run_battery
from terrain.battery.stream import StreamOptions
from terrain.checkpoint import Checkpoint
from terrain.measures.esd.traps import correlation_trap, trap_seed
from terrain.synthetic import random_init_replica
from tests.conftest import CONFIGS


def _battery(path: Path, options: StreamOptions | None = None) -> tuple[Anatomy, BatteryResult]:
    ckpt = Checkpoint(path, name="tiny-bert")
    anatomy = build_anatomy(ckpt, ckpt.config)
    return anatomy, run_battery(anatomy, config=ckpt.config, options=options)


def test_every_projection_is_tested_with_its_name_seed(tiny_bert: Path) -> None:
    anatomy, result = _battery(tiny_bert)
    layers = anatomy.dims.layers["encoder"]
    assert set(result.traps) == {f"encoder.{r}" for r in ("q", "k", "v", "o", "mlp_up", "mlp_down")}
    assert not result.traps_sampled
    q = anatomy.layers("encoder", "q")
    role = result.traps["encoder.q"]
    assert role.layers == tuple(range(layers))
    for entry, trap in zip(q, role.traps, strict=True):
        assert trap.seed == trap_seed(entry.tensor)
        assert trap == correlation_trap(anatomy.read(entry), seed=trap.seed)
        assert not trap.is_trap  # an i.i.d. random-init matrix


def test_the_same_checkpoint_gives_the_same_traps(tiny_bert: Path) -> None:
    _, first = _battery(tiny_bert)
    _, again = _battery(tiny_bert)
    assert first.traps == again.traps


def test_wide_matrices_are_tested_on_the_first_middle_and_last_layer(
    replica_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {**json.loads((CONFIGS / "bert-tiny.json").read_text()), "num_hidden_layers": 6}
    deep = random_init_replica(config, seed=0, cache_dir=replica_cache, label="bert-tiny-6")
    monkeypatch.setattr(stream_module, "TRAPS_ALL_LAYERS_MAX_N", 1)
    _, result = _battery(deep)
    assert result.traps["encoder.q"].layers == (0, 2, 5)
    assert "first, middle and last" in result.traps_sampled["encoder.q"]
    assert len(result.spectra["encoder.q"].layers) == 6  # spectra keep every layer


def test_traps_can_be_left_out(tiny_bert: Path) -> None:
    _, result = _battery(tiny_bert, StreamOptions(traps=False))
    assert result.traps == {}
