"""Every seed architecture as an anatomy family: tiny replicas, real-shape configs, fused splits.

Tiny replicas are built once per session through the `synthetic:` source; real-shape
configs are read on the meta device only (no weights). Fused tensors (GPT-2 `c_attn`,
open_clip `in_proj_weight`, Qwen3.5 `q_proj` and `in_proj_qkv`) are checked against the
computation of the unfused module, with a negative control that must differ.
"""

from __future__ import annotations

import json
import math
import resource
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from terrain.anatomy import Anatomy, build_anatomy
from terrain.anatomy.base import Dimensions, TensorRole
from terrain.anatomy.meta import MetaSource, anatomy_from_config, census_from_config, meta_shapes
from terrain.checkpoint import Checkpoint
from terrain.errors import AnatomyError, CheckpointError
from terrain.sources import SourceContext, resolve

CONFIGS = Path(__file__).resolve().parents[2] / "fixtures" / "configs"
OLMO3_7B_PARAMETERS = 7_298_011_136
CLIP_VIT_B16_PARAMETERS = 149_620_737

# tiny config -> (family, {stack: config path of its layer count}, per-layer roles per stack)
_DECODER = ("q", "k", "v", "o", "mlp_gate", "mlp_up", "mlp_down")
_TOWER = ("q", "k", "v", "o", "mlp_up", "mlp_down", "norm_attn", "norm_mlp")
TINY: dict[str, tuple[str, dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]] = {
    "t5-v1_1-tiny": (
        "t5",
        {"encoder": ("num_layers",), "decoder": ("num_decoder_layers",)},
        {
            "encoder": ("q", "k", "v", "o", "mlp_gate", "mlp_up", "mlp_down", "norm_attn"),
            "decoder": ("q", "xq", "xk", "xv", "xo", "mlp_gate", "mlp_up", "norm_cross"),
        },
    ),
    "dinov2-tiny": (
        "dinov2",
        {"encoder": ("num_hidden_layers",)},
        {"encoder": (*_TOWER, "layer_scale_attn", "layer_scale_mlp")},
    ),
    "clip-vision-tiny": ("clip", {"vision": ("num_hidden_layers",)}, {"vision": _TOWER}),
    "open-clip-tiny": (
        "open_clip",
        {"vision": ("vision_cfg", "layers"), "text": ("text_cfg", "layers")},
        {"vision": _TOWER, "text": _TOWER},
    ),
    "gpt2-tiny": ("gpt2", {"decoder": ("n_layer",)}, {"decoder": _TOWER}),
    "llama-tiny": (
        "llama",
        {"decoder": ("num_hidden_layers",)},
        {"decoder": (*_DECODER, "norm_attn", "norm_mlp")},
    ),
    "qwen3-tiny": (
        "qwen3",
        {"decoder": ("num_hidden_layers",)},
        {"decoder": (*_DECODER, "norm_attn", "norm_mlp", "q_norm", "k_norm")},
    ),
    "qwen3_5-tiny": (
        "qwen3_5",
        {"decoder": ("text_config", "num_hidden_layers"), "vision": ("vision_config", "depth")},
        {"decoder": ("norm_attn", "norm_mlp", "mlp_gate", "mlp_up", "mlp_down"), "vision": _TOWER},
    ),
    "olmo3-tiny": (
        "olmo3",
        {"decoder": ("num_hidden_layers",)},
        {"decoder": (*_DECODER, "norm_attn_post", "norm_mlp_post", "q_norm", "k_norm")},
    ),
}
REAL_SHAPE = (
    "t5-base",
    "t5-v1_1-xxl",
    "bert-large",
    "clip-vit-b16",
    "open-clip-vit-b16",
    "dinov2-large",
    "qwen3-4b",
    "qwen3_5-0_8b",
    "olmo-3-7b",
)


def config_of(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CONFIGS / f"{name}.json").read_text())
    return data


def dig(config: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = config
    for key in path:
        value = value[key]
    return value


@pytest.fixture(scope="session")
def tiny_paths(replica_cache: Path) -> dict[str, Path]:
    """Every tiny config built once through the `synthetic:` source."""
    ctx = SourceContext((CONFIGS,), replica_cache)
    return {name: resolve(name, f"synthetic:{name}", ctx).path for name in TINY}


def tiny(paths: Mapping[str, Path], name: str) -> Anatomy:
    ckpt = Checkpoint(paths[name], name=name)
    return build_anatomy(ckpt, ckpt.config)


def entry(anatomy: Anatomy, stack: str, role: str, layer: int, kind: str = "weight") -> TensorRole:
    return next(r for r in anatomy.layers(stack, role, kind) if r.layer == layer)


def read(anatomy: Anatomy, stack: str, role: str, layer: int, kind: str = "weight") -> torch.Tensor:
    return anatomy.read(entry(anatomy, stack, role, layer, kind), torch.float64)


# ---------------------------------------------------------------------------------------
# Census of every tiny replica
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TINY))
def test_tiny_census_places_every_tensor(tiny_paths: dict[str, Path], name: str) -> None:
    family, _, _ = TINY[name]
    anatomy = tiny(tiny_paths, name)
    census = anatomy.census()
    assert census["family"] == family
    assert census["claimed"] + len(census["unclaimed"]) == census["tensors"]
    assert all(reason.strip() for reason in census["unclaimed"].values())
    claimed = {r.tensor for r in anatomy.roles}
    assert not claimed & set(census["unclaimed"])
    assert claimed | set(census["unclaimed"]) == set(anatomy.source.tensor_shapes())
    total = sum(math.prod(s) for s in anatomy.source.tensor_shapes().values())
    assert census["parameters"] == total


@pytest.mark.parametrize("name", sorted(TINY))
def test_tiny_layer_counts_equal_the_config(tiny_paths: dict[str, Path], name: str) -> None:
    _, counts, per_layer = TINY[name]
    anatomy = tiny(tiny_paths, name)
    config = config_of(name)
    expected = {stack: dig(config, path) for stack, path in counts.items()}
    assert anatomy.census()["layers"] == expected
    for stack, roles in per_layer.items():
        for role in roles:
            layers = [r.layer for r in anatomy.layers(stack, role)]
            assert layers == list(range(expected[stack])), (stack, role)


@pytest.mark.parametrize("name", sorted(TINY))
def test_config_only_census_equals_the_checkpoint_census(
    tiny_paths: dict[str, Path], name: str
) -> None:
    """The meta-device layout has exactly the checkpoint's tensor names and shapes."""
    anatomy = tiny(tiny_paths, name)
    config = config_of(name)
    assert meta_shapes(config, name) == dict(anatomy.source.tensor_shapes())
    from_config = census_from_config(config, name=name)
    assert from_config.pop("weights").startswith("none")
    assert from_config == anatomy.census()


def test_every_role_reads_the_shape_the_census_counts(tiny_paths: dict[str, Path]) -> None:
    for name in TINY:
        anatomy = tiny(tiny_paths, name)
        shapes = anatomy.source.tensor_shapes()
        for r in anatomy.roles:
            assert tuple(anatomy.read(r).shape) == r.shape(shapes[r.tensor]), (name, r)


# ---------------------------------------------------------------------------------------
# Family shapes: GQA, q/k norms, T5 v1.1, layer scale, CLIP towers
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "q", "kv", "q_norm", "k_norm"),
    [
        # hidden 32, 4 heads, 2 kv heads; head_dim 8 (Llama, OLMo-3) or explicit 16 (Qwen3)
        ("llama-tiny", (32, 32), (16, 32), None, None),
        ("qwen3-tiny", (64, 32), (32, 32), (16,), (16,)),  # per head: head_dim
        ("olmo3-tiny", (32, 32), (16, 32), (32,), (16,)),  # all heads: n·head_dim
        ("qwen3_5-tiny", (32, 32), (16, 32), (8,), (8,)),  # full-attention layer 3
    ],
)
def test_gqa_and_qk_norm_shapes(
    tiny_paths: dict[str, Path],
    name: str,
    q: tuple[int, int],
    kv: tuple[int, int],
    q_norm: tuple[int] | None,
    k_norm: tuple[int] | None,
) -> None:
    anatomy = tiny(tiny_paths, name)
    layer = anatomy.layers("decoder", "q")[0].layer
    assert layer is not None
    assert anatomy.dims.n_kv_heads == 2 < anatomy.dims.n_heads == 4
    assert tuple(read(anatomy, "decoder", "q", layer).shape) == q
    assert tuple(read(anatomy, "decoder", "k", layer).shape) == kv
    assert tuple(read(anatomy, "decoder", "v", layer).shape) == kv
    assert kv[0] == anatomy.dims.n_kv_heads * anatomy.dims.d_head
    for role, want in (("q_norm", q_norm), ("k_norm", k_norm)):
        found = anatomy.layers("decoder", role)
        if want is None:
            assert found == []
        else:
            assert {tuple(anatomy.read(r).shape) for r in found} == {want}


def test_dimensions_default_kv_heads_to_heads() -> None:
    dims = Dimensions(d_model=8, n_heads=2, d_head=4, d_ff=16, vocab_size=10, layers={"e": 1})
    assert dims.n_kv_heads == 2
    assert dims.layer_types == {}
    plain = TensorRole("w", "encoder", "q", "weight", 0)
    assert not plain.is_view
    assert plain.shape((3, 4)) == (3, 4)


def test_t5_v1_1_is_gated_and_its_lm_head_is_claimed(tiny_paths: dict[str, Path]) -> None:
    anatomy = tiny(tiny_paths, "t5-v1_1-tiny")
    config = config_of("t5-v1_1-tiny")
    d, d_ff = config["d_model"], config["d_ff"]
    for stack in ("encoder", "decoder"):
        gate = read(anatomy, stack, "mlp_gate", 0)
        assert entry(anatomy, stack, "mlp_gate", 0).tensor.endswith("DenseReluDense.wi_0.weight")
        assert entry(anatomy, stack, "mlp_up", 0).tensor.endswith("DenseReluDense.wi_1.weight")
        assert tuple(gate.shape) == (d_ff, d)
    # transformers 5 ties T5's lm_head to `shared` even for v1.1 (T5Config forces
    # tie_word_embeddings=True), so the replica stores none; a released v1.1 checkpoint
    # stores `lm_head.weight` apart, and the adapter claims it.
    assert anatomy.find("lm_head") == []
    shapes = {**anatomy.source.tensor_shapes(), "lm_head.weight": (config["vocab_size"], d)}
    released = build_anatomy(MetaSource("t5-v1_1", shapes), config)
    assert [r.tensor for r in released.find("lm_head")] == ["lm_head.weight"]
    assert released.census()["claimed"] == len(shapes)


def test_umt5_has_a_position_bias_in_every_layer() -> None:
    config = {
        **config_of("t5-v1_1-tiny"),
        "architectures": ["UMT5ForConditionalGeneration"],
        "model_type": "umt5",
    }
    anatomy = anatomy_from_config(config, name="umt5-tiny")
    assert anatomy.family == "t5"
    for stack, n in (("encoder", 2), ("decoder", 3)):
        assert [r.layer for r in anatomy.layers(stack, "position_bias")] == list(range(n))


def test_dinov2_layer_scale_and_swiglu_split() -> None:
    config = {**config_of("dinov2-tiny"), "use_swiglu_ffn": True}
    anatomy = anatomy_from_config(config, name="dinov2-swiglu")
    shapes = anatomy.source.tensor_shapes()
    gate = entry(anatomy, "encoder", "mlp_gate", 1)
    up = entry(anatomy, "encoder", "mlp_up", 1)
    assert gate.tensor == up.tensor == "encoder.layer.1.mlp.weights_in.weight"
    hidden = (int(32 * 4 * 2 / 3) + 7) // 8 * 8
    assert gate.shape(shapes[gate.tensor]) == (hidden, 32)
    assert (gate.rows, up.rows) == ((0, hidden), (hidden, 2 * hidden))
    assert len(anatomy.layers("encoder", "layer_scale_mlp")) == 2
    census = anatomy.census()
    assert census["by_role"]["encoder.mlp_gate.weight"]["parameters"] == 2 * hidden * 32
    assert census["claimed"] + len(census["unclaimed"]) == census["tensors"]


def test_vision_towers_have_patch_and_class_embeddings(tiny_paths: dict[str, Path]) -> None:
    for name, stack in (("clip-vision-tiny", "vision"), ("open-clip-tiny", "vision")):
        anatomy = tiny(tiny_paths, name)
        (cls,) = anatomy.layers(stack, "cls_token")
        (patch,) = anatomy.layers(stack, "patch_embed")
        assert tuple(anatomy.read(cls).shape) == (32,)
        assert tuple(anatomy.read(patch).shape) == (32, 3, 14, 14)
    dino = tiny(tiny_paths, "dinov2-tiny")
    assert tuple(dino.read(dino.layers("embeddings", "cls_token")[0]).shape) == (1, 1, 32)
    assert "embeddings.mask_token" in dino.unclaimed


def test_clip_and_open_clip_layouts_give_the_same_census() -> None:
    hf = census_from_config(config_of("clip-vit-b16"))
    oc = census_from_config(config_of("open-clip-vit-b16"))
    assert hf["parameters"] == oc["parameters"] == CLIP_VIT_B16_PARAMETERS
    assert hf["layers"] == oc["layers"] == {"vision": 12, "text": 12}

    def role_params(census: dict[str, Any]) -> dict[str, int]:
        return {k: v["parameters"] for k, v in census["by_role"].items()}

    assert role_params(hf) == role_params(oc)


# ---------------------------------------------------------------------------------------
# Hybrid and windowed layers: Qwen3.5 and OLMo-3
# ---------------------------------------------------------------------------------------


def test_qwen3_5_linear_attention_is_labelled_and_never_q_k_v(
    tiny_paths: dict[str, Path],
) -> None:
    anatomy = tiny(tiny_paths, "qwen3_5-tiny")
    types = config_of("qwen3_5-tiny")["text_config"]["layer_types"]
    full = [i for i, t in enumerate(types) if t == "full_attention"]
    linear = [i for i, t in enumerate(types) if t == "linear_attention"]
    assert (full, linear) == ([3], [0, 1, 2])
    assert [anatomy.layer_type("decoder", i) for i in range(4)] == types
    assert anatomy.census()["layer_types"] == {"decoder": types}
    for role in ("q", "k", "v", "o", "attn_gate", "q_norm", "k_norm"):
        found = anatomy.layers("decoder", role)
        assert [r.layer for r in found] == full, role
        assert all("linear_attn" not in r.tensor for r in found)
    for role in ("linear_q", "linear_k", "linear_v", "linear_o", "linear_conv", "linear_norm"):
        found = anatomy.layers("decoder", role)
        assert [r.layer for r in found] == linear, role
        assert all(".linear_attn." in r.tensor for r in found)
        assert {anatomy.layer_type("decoder", r.layer) for r in found if r.layer is not None} == {
            "linear_attention"
        }
    # Attention measures see only the full-attention layers of the text stack.
    assert {r.layer for r in anatomy.find("q") if r.stack == "decoder"} == set(full)


def test_qwen3_5_fused_reads_equal_the_module_computation(tiny_paths: dict[str, Path]) -> None:
    anatomy = tiny(tiny_paths, "qwen3_5-tiny")
    ckpt = anatomy.source
    x = torch.randn(5, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    # Gated attention: q_proj(x).view(T, heads, 2·head_dim).chunk(2) -> (query, gate).
    q_proj = ckpt.tensor("model.language_model.layers.3.self_attn.q_proj.weight", torch.float64)
    query, gate = torch.chunk((x @ q_proj.T).view(5, 4, 16), 2, dim=-1)
    assert torch.allclose(x @ read(anatomy, "decoder", "q", 3).T, query.reshape(5, 32))
    assert torch.allclose(x @ read(anatomy, "decoder", "attn_gate", 3).T, gate.reshape(5, 32))
    assert not torch.allclose(x @ q_proj[:32].T, query.reshape(5, 32))  # contiguous rows: wrong
    # Gated delta net: split(in_proj_qkv(x), [key_dim, key_dim, value_dim]).
    fused = ckpt.tensor("model.language_model.layers.0.linear_attn.in_proj_qkv.weight")
    lq, lk, lv = torch.split(x.float() @ fused.T, [16, 16, 32], dim=-1)
    for role, want in (("linear_q", lq), ("linear_k", lk), ("linear_v", lv)):
        assert torch.allclose(x.float() @ anatomy.read(entry(anatomy, "decoder", role, 0)).T, want)
    # Vision: qkv(x).reshape(T, 3, heads, -1) -> q, k, v.
    qkv = ckpt.tensor("model.visual.blocks.1.attn.qkv.weight", torch.float64)
    vq, vk, vv = (x @ qkv.T).reshape(5, 3, 32).unbind(1)
    for role, want in (("q", vq), ("k", vk), ("v", vv)):
        assert torch.allclose(x @ read(anatomy, "vision", role, 1).T, want)


def test_qwen3_5_text_only_causal_lm_has_the_same_decoder() -> None:
    text = {**config_of("qwen3_5-tiny")["text_config"], "architectures": ["Qwen3_5ForCausalLM"]}
    anatomy = anatomy_from_config(text, name="qwen3_5-text")
    assert anatomy.family == "qwen3_5"
    assert anatomy.census()["layers"] == {"decoder": 4}
    assert entry(anatomy, "decoder", "linear_q", 0).tensor == (
        "model.layers.0.linear_attn.in_proj_qkv.weight"
    )
    assert [r.layer for r in anatomy.layers("decoder", "attn_gate")] == [3]


@pytest.mark.parametrize(
    ("name", "architecture", "head"),
    [
        ("gpt2-tiny", "GPT2Model", None),  # bare model: no `transformer.` prefix
        ("clip-vision-tiny", "CLIPVisionModelWithProjection", "vision_proj"),  # `vision_model.`
        ("dinov2-tiny", "Dinov2ForImageClassification", "classifier"),  # `dinov2.` prefix
        ("llama-tiny", "LlamaModel", None),  # no `model.` prefix, no lm_head
    ],
)
def test_other_classes_of_a_family_are_placed(
    name: str, architecture: str, head: str | None
) -> None:
    config = {**config_of(name), "architectures": [architecture]}
    anatomy = anatomy_from_config(config, name=name)
    census = anatomy.census()
    assert census["claimed"] + len(census["unclaimed"]) == census["tensors"]
    assert census["layers"] == anatomy_from_config(config_of(name)).census()["layers"]
    if head is not None:
        assert [r.stack for r in anatomy.find(head)] == ["head"]


def test_olmo3_layer_types_and_post_norms(tiny_paths: dict[str, Path]) -> None:
    anatomy = tiny(tiny_paths, "olmo3-tiny")
    types = config_of("olmo3-tiny")["layer_types"]
    assert anatomy.dims.layer_types == {"decoder": tuple(types)}
    assert [anatomy.layer_type("decoder", i) for i in range(4)] == types
    assert anatomy.layer_type("decoder", 4) is None
    assert anatomy.layers("decoder", "norm_attn") == []  # OLMo-3 has no pre-norms
    post = entry(anatomy, "decoder", "norm_attn_post", 2)
    assert post.tensor == "model.layers.2.post_attention_layernorm.weight"
    mlp_post = entry(anatomy, "decoder", "norm_mlp_post", 2)
    assert mlp_post.tensor == "model.layers.2.post_feedforward_layernorm.weight"


def test_olmo3_without_layer_types_gets_the_transformers_default() -> None:
    config = {k: v for k, v in config_of("olmo3-tiny").items() if k != "layer_types"}
    config["num_hidden_layers"] = 8
    anatomy = anatomy_from_config(config)
    full = [i for i in range(8) if anatomy.layer_type("decoder", i) == "full_attention"]
    assert full == [3, 7]


# ---------------------------------------------------------------------------------------
# Fused QKV: the split equals the unfused computation (and a wrong split does not)
# ---------------------------------------------------------------------------------------


def _attention(
    x: torch.Tensor,
    w: dict[str, torch.Tensor],
    heads: int,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(QKᵀ/√d_head + mask) V, then O, from separate (out, in) weights and biases."""
    t, d = x.shape[-2:]
    q, k, v = (x @ w[r].T + w[r + "_bias"] for r in ("q", "k", "v"))

    def heads_first(m: torch.Tensor) -> torch.Tensor:
        return m.view(-1, t, heads, d // heads).transpose(1, 2)

    scores = heads_first(q) @ heads_first(k).transpose(-1, -2) / math.sqrt(d // heads)
    if mask is not None:
        scores = scores + mask
    mixed = (scores.softmax(-1) @ heads_first(v)).transpose(1, 2).reshape(-1, t, d)
    out: torch.Tensor = mixed @ w["o"].T + w["o_bias"]
    return out


def _split_weights(anatomy: Anatomy, stack: str, layer: int) -> dict[str, torch.Tensor]:
    w = {}
    for role in ("q", "k", "v", "o"):
        w[role] = read(anatomy, stack, role, layer)
        w[role + "_bias"] = read(anatomy, stack, role, layer, "bias")
    return w


def _misordered(w: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Negative control: the thirds taken in the wrong order (k, v, q read as q, k, v)."""
    out = dict(w)
    for got, took in (("q", "k"), ("k", "v"), ("v", "q")):
        out[got], out[got + "_bias"] = w[took], w[took + "_bias"]
    return out


def _relative_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_open_clip_split_equals_multihead_attention(tiny_paths: dict[str, Path]) -> None:
    anatomy = tiny(tiny_paths, "open-clip-tiny")
    ckpt = anatomy.source
    for stack, prefix, heads in (("vision", "visual.", 4), ("text", "", 4)):
        block = f"{prefix}transformer.resblocks.1.attn."
        mha = nn.MultiheadAttention(32, heads, batch_first=True, dtype=torch.float64)
        mha.load_state_dict(
            {
                "in_proj_weight": ckpt.tensor(block + "in_proj_weight", torch.float64),
                "in_proj_bias": ckpt.tensor(block + "in_proj_bias", torch.float64),
                "out_proj.weight": ckpt.tensor(block + "out_proj.weight", torch.float64),
                "out_proj.bias": ckpt.tensor(block + "out_proj.bias", torch.float64),
            }
        )
        x = torch.randn(2, 6, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            fused, _ = mha(x, x, x, need_weights=False)
        w = _split_weights(anatomy, stack, 1)
        assert tuple(w["q"].shape) == (32, 32)
        torch.testing.assert_close(_attention(x, w, heads), fused, rtol=1e-10, atol=1e-12)
        assert _relative_gap(_attention(x, _misordered(w), heads), fused) > 0.1


def test_gpt2_split_equals_the_hf_attention(tiny_paths: dict[str, Path]) -> None:
    import transformers

    path = tiny_paths["gpt2-tiny"]
    anatomy = tiny(tiny_paths, "gpt2-tiny")
    model: Any = transformers.GPT2Model.from_pretrained(
        path, dtype=torch.float64, attn_implementation="eager"
    )
    model.eval()
    # Scaled so that the attention pattern is far from uniform at GPT-2's small init.
    x = 10 * torch.randn(1, 5, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    mask = torch.full((5, 5), float("-inf"), dtype=torch.float64).triu(1)[None, None]
    with torch.no_grad():
        reference = model.h[1].attn(x, attention_mask=mask)[0]
    w = _split_weights(anatomy, "decoder", 1)
    # c_attn is stored (in, 3·out): the split reads (out, in) like nn.Linear.
    (c_attn,) = [r for r in anatomy.layers("decoder", "q") if r.layer == 1]
    assert anatomy.source.tensor_shapes()[c_attn.tensor] == (32, 96)
    assert c_attn.transpose
    assert c_attn.rows == (0, 32)
    torch.testing.assert_close(_attention(x, w, 4, mask), reference, rtol=1e-10, atol=1e-12)
    assert _relative_gap(_attention(x, _misordered(w), 4, mask), reference) > 0.1
    # The MLP reads (out, in) too.
    assert tuple(read(anatomy, "decoder", "mlp_up", 0).shape) == (128, 32)
    assert tuple(read(anatomy, "decoder", "mlp_down", 0).shape) == (32, 128)


def test_fused_tensor_is_counted_once_and_split_per_role(tiny_paths: dict[str, Path]) -> None:
    anatomy = tiny(tiny_paths, "gpt2-tiny")
    census = anatomy.census()
    assert census["claimed"] == census["tensors"] == 28
    for role in ("q", "k", "v"):
        assert census["by_role"][f"decoder.{role}.weight"] == {"tensors": 2, "parameters": 2048}
        assert census["by_role"][f"decoder.{role}.bias"] == {"tensors": 2, "parameters": 64}
    split = sum(census["by_role"][f"decoder.{r}.weight"]["parameters"] for r in "qkv")
    assert split == 2 * 32 * 96


# ---------------------------------------------------------------------------------------
# Real-shape configs: config-only census, no weights
# ---------------------------------------------------------------------------------------


def _meta_model_parameters(config: Mapping[str, Any]) -> int:
    """Parameters of the model built directly on the meta device (tied tensors once)."""
    import transformers

    clean = {k: v for k, v in config.items() if k != "model_type"}
    hf_config = transformers.AutoConfig.for_model(config["model_type"], **clean)
    with torch.device("meta"):
        model = getattr(transformers, config["architectures"][0])(hf_config)
    assert all(p.is_meta for p in model.parameters())
    return sum(p.numel() for p in model.parameters())


def test_real_shape_census_allocates_no_weights() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.perf_counter()
    censuses = {name: census_from_config(config_of(name), name=name) for name in REAL_SHAPE}
    elapsed = time.perf_counter() - start
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    total = sum(c["parameters"] for c in censuses.values())
    assert total > 2.4e10  # 24 billion parameters: ~96 GB in float32, were they allocated
    assert grown_mib < 1024, f"peak memory grew by {grown_mib:.0f} MiB"
    assert elapsed < 30, f"config-only census of {len(REAL_SHAPE)} models took {elapsed:.1f}s"
    for name, census in censuses.items():
        assert census["claimed"] + len(census["unclaimed"]) == census["tensors"], name


@pytest.mark.parametrize("name", [n for n in REAL_SHAPE if not n.startswith("open-clip")])
def test_real_shape_census_matches_the_meta_model(name: str) -> None:
    config = config_of(name)
    census = census_from_config(config, name=name)
    assert census["parameters"] == _meta_model_parameters(config)


def test_olmo3_7b_has_the_seed_trace_parameter_count() -> None:
    census = census_from_config(config_of("olmo-3-7b"), name="olmo-3-7b")
    assert census["parameters"] == OLMO3_7B_PARAMETERS
    assert census["layers"] == {"decoder": 32}
    assert (census["heads"], census["kv_heads"], census["d_head"]) == (32, 32, 128)
    assert census["layer_types"]["decoder"][:8] == ["sliding_attention"] * 3 + [
        "full_attention"
    ] + ["sliding_attention"] * 3 + ["full_attention"]
    assert census["by_role"]["decoder.q_norm.weight"] == {"tensors": 32, "parameters": 32 * 4096}
    assert census["by_role"]["head.lm_head.weight"]["parameters"] == 100278 * 4096


def test_real_shape_qwen_configs_show_gqa_and_hybrid_layers() -> None:
    qwen3 = census_from_config(config_of("qwen3-4b"))
    assert (qwen3["heads"], qwen3["kv_heads"], qwen3["d_head"]) == (32, 8, 128)
    assert qwen3["by_role"]["decoder.k.weight"]["parameters"] == 36 * 8 * 128 * 2560
    assert "head.lm_head.weight" not in qwen3["by_role"]  # tied to the embedding
    qwen3_5 = census_from_config(config_of("qwen3_5-0_8b"))
    assert qwen3_5["layer_types"]["decoder"].count("linear_attention") == 18
    assert qwen3_5["by_role"]["decoder.q.weight"]["tensors"] == 6
    assert qwen3_5["by_role"]["decoder.linear_q.weight"]["tensors"] == 18
    assert qwen3_5["layers"] == {"decoder": 24, "vision": 12}


def test_meta_source_has_no_values() -> None:
    source = MetaSource("olmo-3-7b", {"model.norm.weight": (4096,)})
    with pytest.raises(
        CheckpointError,
        match=r"model 'olmo-3-7b': tensor 'model\.norm\.weight' has no values: .*config alone",
    ):
        source.tensor("model.norm.weight")


# ---------------------------------------------------------------------------------------
# Bad input: every failure names the tensor (or field) and what was expected
# ---------------------------------------------------------------------------------------


def _anatomy_with(name: str, edits: Mapping[str, tuple[int, ...] | None]) -> Anatomy:
    """The anatomy of a tiny config's layout with some shapes changed (None: removed)."""
    config = config_of(name)
    shapes: dict[str, tuple[int, ...]] = meta_shapes(config, name)
    for tensor, shape in edits.items():
        if shape is None:
            del shapes[tensor]
        else:
            shapes[tensor] = shape
    return build_anatomy(MetaSource(name, shapes), config)


BAD_SHAPES = [
    pytest.param(
        "gpt2-tiny",
        {"transformer.h.0.attn.c_attn.weight": (32, 95)},
        r"model 'gpt2-tiny': fused tensor 'transformer\.h\.0\.attn\.c_attn\.weight' has shape "
        r"\[32, 95\]: its output axis of 95 is not divisible by 3, expected 3 equal parts "
        r"q, k, v \(GPT-2 c_attn",
        id="gpt2-qkv-not-divisible-by-3",
    ),
    pytest.param(
        "open-clip-tiny",
        {"visual.transformer.resblocks.1.attn.in_proj_weight": (97, 32)},
        r"fused tensor 'visual\.transformer\.resblocks\.1\.attn\.in_proj_weight' has shape "
        r"\[97, 32\]: its output axis of 97 is not divisible by 3",
        id="open-clip-qkv-not-divisible-by-3",
    ),
    pytest.param(
        "gpt2-tiny",
        {"transformer.h.1.attn.c_attn.weight": (32, 99)},
        r"tensor 'transformer\.h\.1\.attn\.c_attn\.weight' \(q: transposed, rows 0:33 of stored "
        r"\[32, 99\]\) has shape \[33, 32\], expected \[32, 32\]",
        id="gpt2-qkv-wrong-width",
    ),
    pytest.param(
        "qwen3-tiny",
        {"model.layers.1.self_attn.k_norm.weight": (8,)},
        r"tensor 'model\.layers\.1\.self_attn\.k_norm\.weight' has shape \[8\], expected \[16\] "
        r"\(qwen3 decoder k_norm from config\)",
        id="qwen3-k-norm-not-head-dim",
    ),
    pytest.param(
        "olmo3-tiny",
        {"model.layers.0.self_attn.q_norm.weight": (8,)},
        r"'model\.layers\.0\.self_attn\.q_norm\.weight' has shape \[8\], expected \[32\]",
        id="olmo3-q-norm-not-all-heads",
    ),
    pytest.param(
        "llama-tiny",
        {"model.layers.1.self_attn.v_proj.weight": (32, 32)},
        r"'model\.layers\.1\.self_attn\.v_proj\.weight' has shape \[32, 32\], expected \[16, 32\]",
        id="llama-gqa-v-full-width",
    ),
    pytest.param(
        "qwen3_5-tiny",
        {"model.language_model.layers.3.self_attn.q_proj.weight": (56, 32)},
        r"fused tensor 'model\.language_model\.layers\.3\.self_attn\.q_proj\.weight' has shape "
        r"\[56, 32\], its output axis of 56 cannot be split into q 8 \+ attn_gate 8 rows per "
        r"block of 16",
        id="qwen3_5-q-gate-not-per-head",
    ),
    pytest.param(
        "qwen3_5-tiny",
        {"model.language_model.layers.3.self_attn.q_proj.weight": (48, 32)},
        r"tensor 'model\.language_model\.layers\.3\.self_attn\.q_proj\.weight' \(q: rows 0:8 of "
        r"every 16 of stored \[48, 32\]\) has shape \[24, 32\], expected \[32, 32\]",
        id="qwen3_5-q-too-few-heads",
    ),
    pytest.param(
        "qwen3_5-tiny",
        {"model.language_model.layers.1.linear_attn.in_proj_qkv.weight": (60, 32)},
        r"'model\.language_model\.layers\.1\.linear_attn\.in_proj_qkv\.weight' has shape "
        r"\[60, 32\], its output axis of 60 cannot be split into linear_q 16 \+ linear_k 16 \+ "
        r"linear_v 32",
        id="qwen3_5-linear-qkv-wrong-size",
    ),
    pytest.param(
        "dinov2-tiny",
        {"embeddings.position_embeddings": (1, 9, 32)},
        r"'embeddings\.position_embeddings' has shape \[1, 9, 32\], expected \[1, 5, 32\]",
        id="dinov2-positions-not-image-grid",
    ),
    pytest.param(
        "olmo3-tiny",
        {f"model.layers.3.{t}": None for t in ("self_attn.q_proj.weight",)},
        r"decoder role 'q' found in layers \[0, 1, 2\], the config says 4 layers \(0\.\.3\)",
        id="olmo3-missing-layer",
    ),
    pytest.param(
        "qwen3_5-tiny",
        {
            "model.language_model.layers.2.self_attn.q_proj.weight": (64, 32),
        },
        r"decoder role 'q' found in layers \[2, 3\], expected layers \[3\] "
        r"\(the config's full_attention layers\)",
        id="qwen3_5-attention-in-a-linear-layer",
    ),
    pytest.param(
        "t5-v1_1-tiny",
        {"encoder.block.1.layer.1.DenseReluDense.wi_0.weight": None},
        r"encoder role 'mlp_gate' found in layers \[0\], the config says 2 layers",
        id="t5-v1_1-missing-gate",
    ),
]


@pytest.mark.parametrize(("name", "edits", "message"), BAD_SHAPES)
def test_bad_shapes_are_named(
    name: str, edits: Mapping[str, tuple[int, ...] | None], message: str
) -> None:
    with pytest.raises(AnatomyError, match=message):
        _anatomy_with(name, edits)


def test_unknown_model_type_in_a_config_only_census() -> None:
    with pytest.raises(
        AnatomyError,
        match=r"model 'x': unknown architecture: config\.json model_type 'qwen9' has no anatomy "
        r"adapter \(did you mean 'qwen3'\?\); supported model types: .*olmo3.*open_clip",
    ):
        census_from_config({"model_type": "qwen9", "architectures": ["Qwen9Model"]}, name="x")


def test_unknown_tensor_in_a_new_family_is_named() -> None:
    config = config_of("llama-tiny")
    shapes = meta_shapes(config)
    shapes["model.layers.0.self_attn.rotary.weight"] = (4,)
    with pytest.raises(
        AnatomyError,
        match=r"the llama adapter cannot place tensor\(s\) 'model\.layers\.0\.self_attn\.rotary"
        r"\.weight'",
    ):
        build_anatomy(MetaSource("l", shapes), config)


def test_bad_layer_types_are_named() -> None:
    config = config_of("olmo3-tiny")
    config["layer_types"] = ["sliding_attention", "full_attention"]
    with pytest.raises(
        AnatomyError,
        match=r"config\.json field 'layer_types' must list 4 entries from "
        r"\['full_attention', 'sliding_attention'\]",
    ):
        build_anatomy(MetaSource("o", meta_shapes(config_of("olmo3-tiny"))), config)
