"""Evidence plots are drawn when the report reads them, once, and never for a caller that
only wants the value; the heap trims still collect what was made after a freeze."""

from __future__ import annotations

import base64
import gc
import weakref
from pathlib import Path
from typing import Any

import pytest

from terrain.config import ModelSpec
from terrain.memory import freeze_survivors, trim_heap
from terrain.model import LoadedModel, load_model
from terrain.property import declarations
from terrain.report.plots import layer_matrices
from terrain.sources import SourceContext
from tests.conftest import CONFIGS


def test_a_property_draws_its_plot_only_when_its_evidence_is_read(
    tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[str] = []

    def counting(*args: Any, **kwargs: Any) -> str:
        drawn.append(args[1])
        return layer_matrices(*args, **kwargs)

    monkeypatch.setattr("terrain.checks.crosslayer.layer_matrices", counting)
    monkeypatch.setattr(LoadedModel, "null_batteries", lambda self: [self.battery()])
    ctx = SourceContext((CONFIGS,), tmp_path / "cache")
    model = load_model(ModelSpec(name="bert-tiny", source=str(tiny_bert)), ctx, device="cpu")
    result = declarations().get("crosslayer_corr").evaluate(model, None)
    assert result.finding.value > 0
    assert drawn == []  # the value alone draws nothing
    (evidence,) = result.evidence
    png = evidence.png_base64
    assert evidence.png_base64 is png
    assert drawn == ["bert-tiny: layer × layer cosine"]  # drawn once, on the first read
    assert base64.b64decode(png).startswith(b"\x89PNG")


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_a_cycle_made_after_a_freeze_is_still_collected_by_the_heap_trim() -> None:
    kept = _Node()
    kept_ref = weakref.ref(kept)
    freeze_survivors()
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    cycle_ref = weakref.ref(a)
    del a, b
    gc.disable()  # only the trim may collect the cycle
    try:
        assert cycle_ref() is not None
        trim_heap()
        assert cycle_ref() is None
    finally:
        gc.enable()
    # a frozen object without a cycle is still freed by its last reference
    del kept
    assert kept_ref() is None
