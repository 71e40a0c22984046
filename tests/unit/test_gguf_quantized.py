"""Quantized GGUF files: the values read are exactly gguf's own dequantization.

Measured on the tiny seeded decoders of gguf_helpers (every matrix entry N(0, 0.2²), rows
of 32), over all 2-D weights, against the float32 originals:

    Q8_0   max |error| 0.0034  relative Frobenius error 0.54 %   (llama and qwen3 alike)
    Q4_1   max |error| 0.049   relative Frobenius error 7.9 %

The bands asserted below (Q8_0 under 1 %, Q4_1 between 3 and 12 %) hold those figures with
room for other seeds; a reader that skipped dequantization, or dequantized another tensor,
would be far outside them.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from terrain.anatomy import build_anatomy
from terrain.gguf import GGUFCheckpoint, build_gguf_module
from terrain.gguf.export import quantized_round_trip
from tests.unit.gguf_helpers import input_ids, saved_tensors, write_tiny

# quantization -> (lowest, highest) relative Frobenius error over the 2-D weights
ERROR_BANDS = {"Q8_0": (1e-3, 0.01), "Q4_1": (0.03, 0.12)}
MAX_ABS = {"Q8_0": 0.006, "Q4_1": 0.08}


@pytest.fixture(
    scope="module",
    params=[(f, q) for f in ("llama", "qwen3") for q in ERROR_BANDS],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def quantized(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    family, quantization = request.param
    folder = tmp_path_factory.mktemp(f"gguf-{family}-{quantization}")
    model, file = write_tiny(family, folder, quantization=quantization)
    return family, quantization, model, GGUFCheckpoint(file, name=f"{family}-{quantization}")


def test_values_are_exactly_ggufs_dequantization(quantized: Any) -> None:
    _family, quantization, model, ckpt = quantized
    for name, original in saved_tensors(model).items():
        got = ckpt.tensor(name)
        if original.dim() < 2:  # norm gains and biases stay F32, as llama-quantize keeps them
            assert ckpt.tensor_quantization(name) == "F32", name
            assert torch.equal(got, original), name
            continue
        assert ckpt.tensor_quantization(name) == quantization, name
        expected = torch.from_numpy(quantized_round_trip(original.numpy(), quantization))
        assert torch.equal(got, expected), name


def test_q8_0_and_q4_1_errors_against_the_original_are_in_band(quantized: Any) -> None:
    """Q8_0: max 0.0034, relative 0.54 %; Q4_1: max 0.049, relative 7.9 % (module docstring)."""
    _family, quantization, model, ckpt = quantized
    squared_error = squared_norm = 0.0
    worst = 0.0
    for name, original in saved_tensors(model).items():
        if original.dim() < 2:
            continue
        diff = ckpt.tensor(name, torch.float64) - original.double()
        worst = max(worst, float(diff.abs().max()))
        squared_error += float(diff.square().sum())
        squared_norm += float(original.double().square().sum())
    relative = (squared_error / squared_norm) ** 0.5
    low, high = ERROR_BANDS[quantization]
    assert low < relative < high, f"{quantization}: relative error {relative:.4f}"
    assert 0.0 < worst < MAX_ABS[quantization], f"{quantization}: max error {worst:.4f}"


def test_census_counts_tensors_by_type(quantized: Any) -> None:
    _family, quantization, model, ckpt = quantized
    tensors = saved_tensors(model)
    matrices = sum(1 for t in tensors.values() if t.dim() >= 2)
    assert ckpt.quantization_census() == {"F32": len(tensors) - matrices, quantization: matrices}
    census = build_anatomy(ckpt, ckpt.config).census()
    assert census["claimed"] == census["tensors"] == len(tensors)


def test_transformers_module_from_the_quantized_file_matches_the_read_tensors(
    quantized: Any,
) -> None:
    """transformers dequantizes and unpermutes on its own: its module must compute what a
    module holding terrain's tensors computes."""
    import transformers

    family, _quantization, model, ckpt = quantized
    built = build_gguf_module(ckpt, dtype="float32", device="cpu")
    mine = getattr(transformers, model.config.architectures[0])(model.config).eval()
    missing, unexpected = mine.load_state_dict(
        {n: ckpt.tensor(n) for n in ckpt.tensor_names()}, strict=False
    )
    assert unexpected == []
    assert set(missing) <= {"lm_head.weight"}  # tied to the embedding
    ids = input_ids()
    with torch.no_grad():
        torch.testing.assert_close(built(ids).logits, mine(ids).logits, rtol=0, atol=1e-5)
        # and the quantization did change the model (the comparison above is not vacuous)
        assert not torch.allclose(built(ids).logits, model(ids).logits, atol=1e-3), family


def test_dequantization_is_lazy_one_tensor_per_read(
    quantized: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gguf.quants import dequantize as real

    from terrain.gguf import checkpoint as module

    _family, quantization, _model, ckpt = quantized
    calls: list[tuple[int, ...]] = []

    def counting(data: Any, qtype: Any) -> Any:
        calls.append(tuple(data.shape))
        return real(data, qtype)

    monkeypatch.setattr(module, "dequantize", counting)
    fresh = GGUFCheckpoint(ckpt.file, name="fresh")
    fresh.validate()
    _ = fresh.tensor_shapes(), fresh.config, fresh.quantization_census()
    assert calls == []  # opening, validating and the census read no values
    name = "model.layers.1.mlp.up_proj.weight"
    fresh.tensor(name)
    assert len(calls) == 1  # that tensor, and nothing else
    assert fresh.tensor_quantization(name) == quantization
