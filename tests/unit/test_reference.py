"""The reference forward equals the library's, block by block; the call census equals the
config's prediction. Tiny replicas of every family with a reference, rewritten at a generic
point of weight space (so that gains, biases and layer scales are not all 0 or 1 and a
forgotten term shows), in float64 and, for BERT and T5, in float32.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from terrain.anatomy import Anatomy, build_anatomy
from terrain.checkpoint import Checkpoint
from terrain.modules import build_module
from terrain.reference import TOLERANCE, NotReproducedError, reference_families, reproduce
from terrain.reference.family import block_path
from terrain.reference.ops import (
    apply_rope,
    attention,
    layer_norm,
    rms_norm,
    rope_inv_freq,
    t5_bucket,
)
from terrain.tracing import (
    NotPredictedError,
    call_census,
    census_by_kind,
    forward_inputs,
    predicted_census,
)
from tests.conftest import CONFIGS, TINY_FORWARD_MODELS, build_tiny

TINY = TINY_FORWARD_MODELS


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def generic_checkpoint(source: Path, target: Path, seed: int = 0) -> Path:
    """A copy of a checkpoint folder with every tensor resampled: matrices N(0, 1/fan_in),
    biases 0.1·N(0, 1), gains and layer scales 1 + 0.3·N(0, 1)."""
    shutil.copytree(source, target)
    gen = torch.Generator().manual_seed(seed)
    tensors = load_file(str(source / "model.safetensors"))
    out = {}
    for name, t in sorted(tensors.items()):
        noise = torch.randn(t.shape, generator=gen, dtype=torch.float64)
        if t.dim() >= 2:
            value = noise / math.sqrt(t[0].numel() if t.dim() > 2 else t.shape[-1])
        elif name.endswith("bias"):
            value = 0.1 * noise
        else:
            value = 1.0 + 0.3 * noise
        out[name] = value.to(t.dtype).contiguous()
    save_file(out, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target


class Built:
    def __init__(self, path: Path, name: str, dtype: str = "float64") -> None:
        ckpt = Checkpoint(path, name=name)
        self.config: dict[str, Any] = ckpt.config
        self.anatomy: Anatomy = build_anatomy(ckpt, ckpt.config)
        self.module = build_module(ckpt, dtype=dtype, device="cpu", trust_remote_code=False)
        self.inputs = forward_inputs(ckpt.config, seq_len=8, seed=0, dtype=getattr(torch, dtype))


@pytest.fixture(scope="module")
def generic(
    replica_cache: Path, tiny_bert: Path, tiny_t5: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str, str], Built]:
    built: dict[tuple[str, str], Built] = {}
    paths: dict[str, Path] = {}

    def get(name: str, dtype: str = "float64") -> Built:
        if name not in paths:
            source = {"bert-tiny": tiny_bert, "t5-tiny": tiny_t5}.get(name)
            source = source or build_tiny(name, replica_cache)
            paths[name] = generic_checkpoint(source, tmp_path_factory.mktemp("generic") / name)
        if (name, dtype) not in built:
            built[name, dtype] = Built(paths[name], name, dtype)
        return built[name, dtype]

    return get


@pytest.mark.parametrize("name", TINY)
def test_reference_equals_library_block_by_block(
    generic: Callable[[str, str], Built], name: str
) -> None:
    model = generic(name, "float64")
    result = reproduce(model.module, model.anatomy, model.config, model.inputs)
    stacks = {c.what.split(" ")[0].split(".")[0] for c in result.comparisons}
    blocks = [c for c in result.comparisons if c.what.split(".")[-1].isdigit()]
    assert len(blocks) == sum(model.anatomy.dims.layers.get(s, 0) for s in stacks), result
    assert any(c.what.endswith("embeddings") for c in result.comparisons)
    assert any(c.what.endswith("chained") for c in result.comparisons)
    assert result.max_error <= TOLERANCE, result.worst


@pytest.mark.parametrize("name", ["bert-tiny", "t5-tiny"])
def test_reference_equals_library_in_float32(
    generic: Callable[[str, str], Built], name: str
) -> None:
    model = generic(name, "float32")
    result = reproduce(model.module, model.anatomy, model.config, model.inputs)
    assert result.max_error <= TOLERANCE, result.worst
    assert result.max_error > 1e-12  # really computed in float32


def test_bert_and_t5_references_are_float64_exact(generic: Callable[[str, str], Built]) -> None:
    """Where the library computes in float64 throughout (BERT), the reference agrees to
    rounding; T5LayerNorm takes its mean square in float32, so T5 agrees to float32."""
    bert = generic("bert-tiny", "float64")
    assert reproduce(bert.module, bert.anatomy, bert.config, bert.inputs).max_error < 1e-12


def test_a_wrong_weight_is_caught_in_its_block(generic: Callable[[str, str], Built]) -> None:
    """Negative control: the module changed in one block's V, the checkpoint (read by the
    reference) not: that block, and only from there on, disagrees by O(1)."""
    model = generic("t5-tiny", "float64")
    v = model.module.get_parameter("encoder.block.1.layer.0.SelfAttention.v.weight")
    saved = v.detach().clone()
    try:
        with torch.no_grad():
            v.mul_(2.0)
        errors = {
            c.what: c.error
            for c in reproduce(model.module, model.anatomy, model.config, model.inputs).comparisons
        }
    finally:
        with torch.no_grad():
            v.copy_(saved)
    assert errors["encoder.1"] > 1e-2
    assert errors["encoder.0"] < TOLERANCE
    assert errors["encoder.2"] < TOLERANCE
    assert errors["encoder chained"] > 1e-2


def test_families_without_reference_are_refused(generic: Callable[[str, str], Built]) -> None:
    model = generic("bert-tiny", "float64")
    other = Anatomy("no-such-family", model.anatomy.source, model.anatomy.dims, (), {})
    with pytest.raises(NotReproducedError, match="no-such-family"):
        reproduce(model.module, other, model.config, model.inputs)
    assert {"bert", "t5", "llama", "qwen3", "qwen3_5", "olmo3", "gpt2", "dinov2", "clip"} <= set(
        reference_families()
    )


def test_block_path_cuts_after_the_layer_index() -> None:
    names = ["encoder.block.3.layer.0.SelfAttention.q.weight", "h.1.attn.c_attn.weight"]
    assert block_path(names[0], 3, names) == "encoder.block.3"
    assert block_path("transformer.h.1.attn.c_attn.weight", 1, names) == "h.1"


# Census ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TINY)
def test_call_census_matches_the_config(generic: Callable[[str, str], Built], name: str) -> None:
    model = generic(name, "float64")
    assert census_by_kind(call_census(model.module, model.inputs)) == predicted_census(model.config)


def test_olmo3_7b_prediction_reproduces_the_seed_trace() -> None:
    """Seed trace of OLMo-3-7B (32 layers): Linear 225, RMSNorm 129, SiLU 32, Embedding 1;
    transformers 5 computes one rotary table per distinct layer type (the seed: one)."""
    config = json.loads((CONFIGS / "olmo-3-7b.json").read_text())
    assert predicted_census(config) == {
        "activation": 32,
        "embedding": 1,
        "linear": 225,
        "norm": 129,
        "rotary": 2,
    }


def test_census_prediction_follows_the_config() -> None:
    config = json.loads((CONFIGS / "t5-tiny.json").read_text())
    base = predicted_census(config)
    more = predicted_census({**config, "num_decoder_layers": config["num_decoder_layers"] + 1})
    assert more["linear"] - base["linear"] == 10  # q k v o, xq xk xv xo, wi, wo
    assert more["norm"] - base["norm"] == 3
    gated = predicted_census({**config, "feed_forward_proj": "gated-gelu"})
    assert gated["linear"] - base["linear"] == 3 + 2  # one more MLP Linear per block
    with pytest.raises(NotPredictedError, match="no-such-type"):
        predicted_census({"model_type": "no-such-type"})
    with pytest.raises(NotPredictedError, match="T5ForQuestionAnswering"):
        predicted_census({**config, "architectures": ["T5ForQuestionAnswering"]})


# Operations -----------------------------------------------------------------------------


def test_t5_buckets_match_the_library() -> None:
    from transformers.models.t5.modeling_t5 import T5Attention

    rel = torch.arange(-300, 300)
    for bidirectional, n in ((True, 32), (False, 32), (True, 8)):
        library = T5Attention._relative_position_bucket(rel, bidirectional, n, 128)  # type: ignore[no-untyped-call]
        ours = [t5_bucket(int(r), bidirectional, n, 128) for r in rel]
        assert library.tolist() == ours, (bidirectional, n)


def test_norms_attention_and_rope_from_their_formulas() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 12, generator=gen, dtype=torch.float64)
    g, b = torch.rand(12, dtype=torch.float64), torch.rand(12, dtype=torch.float64)
    lib = torch.nn.functional.layer_norm(x, (12,), g, b, 1e-5)
    assert torch.allclose(layer_norm(x, g, b, 1e-5), lib, atol=1e-13)
    rms = rms_norm(x, g, 1e-6)
    assert torch.allclose(rms / g, x / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt())
    q, k, v = (torch.randn(2, 4, 5, 3, generator=gen, dtype=torch.float64) for _ in range(3))
    causal = torch.ones(5, 5, dtype=torch.bool).tril()[None, None]
    lib = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=causal)
    assert torch.allclose(attention(q, k, v, scaling=3**-0.5, allowed=causal), lib, atol=1e-13)
    # RoPE: pair (i, i + r/2) is the complex number x_i + i·x_{i+r/2} times e^{i·p·θ_i}.
    heads = torch.randn(1, 1, 5, 8, generator=gen, dtype=torch.float64)
    inv = rope_inv_freq(8, 10000.0)
    out = apply_rope(heads, torch.arange(5), inv)
    z = torch.complex(heads[..., :4], heads[..., 4:]) * torch.polar(
        torch.ones(5, 4, dtype=torch.float64), torch.arange(5.0)[:, None] * inv
    )
    assert torch.allclose(out, torch.cat([z.real, z.imag], -1), atol=1e-13)
