"""A GGUF model's null is rounded like the model: each tensor through its stored type."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from terrain.config import ModelSpec
from terrain.gguf import GGUFCheckpoint
from terrain.gguf.requantize import Requantizer
from terrain.model import open_model
from terrain.sources import SourceContext, resolve
from tests.unit.gguf_helpers import write_tiny


def _distinct_per_block(values: torch.Tensor, block: int = 32) -> int:
    rows = values.reshape(-1, block).numpy()
    return max(len(np.unique(r)) for r in rows)


def test_rounding_puts_a_float_tensor_on_the_types_grid() -> None:
    rounding = Requantizer({"w": "Q4_1", "g": "F32"})
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(8, 64, generator=gen)
    assert _distinct_per_block(w) == 32  # control: a float tensor is not on a 4-bit grid
    rounded = rounding("w", w)
    assert rounded.shape == w.shape
    assert _distinct_per_block(rounded) <= 16  # Q4_1: 16 levels per block of 32
    assert 0 < float((rounded - w).abs().max()) < 0.5
    assert torch.equal(rounding("g", w), w)  # stored as float: untouched
    assert torch.equal(rounding("other", w), w)  # not in the model: untouched


def test_a_type_gguf_cannot_quantize_to_is_left_in_float_and_said() -> None:
    rounding = Requantizer({"w": "Q4_K"})
    w = torch.randn(4, 64)
    assert torch.equal(rounding("w", w), w)
    assert "no quantizer for the type: Q4_K" in rounding.describe()


def test_the_null_of_a_q4_1_file_is_on_its_grid_and_says_so(tmp_path: Path) -> None:
    _model, file = write_tiny("llama", tmp_path, quantization="Q4_1")
    ctx = SourceContext((), tmp_path / "cache")
    spec = ModelSpec(name="tiny-q4", source=str(file))
    model = open_model(
        spec, resolve("tiny-q4", str(file), ctx), device="cpu", cache_dir=ctx.cache_dir
    )
    assert isinstance(model.checkpoint, GGUFCheckpoint)
    assert model.dtype_census().get("Q4_1", 0) > 0
    null = model.null()
    name = next(
        n
        for n in model.checkpoint.tensor_names()
        if model.checkpoint.tensor_quantization(n) == "Q4_1"
    )
    described = model.null_description()
    assert "quantized and dequantized with its model tensor's type" in described
    assert "Q4_1" in described
    assert _distinct_per_block(null.anatomy.source.tensor(name)) <= 16  # what the battery reads
    rounded = null.module().state_dict()[name]  # what the forward properties run
    assert _distinct_per_block(rounded) <= 16
    # control: the same seed without rounding is not on the grid
    null.rounding = None
    assert _distinct_per_block(null.module().state_dict()[name]) > 16
