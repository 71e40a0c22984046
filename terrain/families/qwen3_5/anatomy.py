"""Qwen3.5: a hybrid decoder of gated-delta-net (linear attention) and gated full attention.

From transformers' Qwen3_5ForConditionalGeneration (model_type "qwen3_5"; text-only
Qwen3_5ForCausalLM is "qwen3_5_text"): the language model under `model.language_model.`
(ForCausalLM: `model.`), the vision tower under `model.visual.`, and `lm_head` unless tied.
`layer_types` (default: every `full_attention_interval`-th layer full, 4) gives each
decoder layer its token mixer:

- "full_attention" layers hold `self_attn.{q,k,v,o}_proj`, `q_norm`/`k_norm` (per head,
  size head_dim) and GQA k/v. `q_proj` is fused: for each head h it holds [q_h | gate_h]
  (2·head_dim rows), so q reads rows 0:head_dim of every 2·head_dim block and attn_gate
  (a sigmoid gate on the attention output) the other half.
- "linear_attention" layers hold a Qwen3_5GatedDeltaNet under `linear_attn.`: the fused
  `in_proj_qkv` ([q | k | v] rows: key_dim, key_dim, value_dim), `in_proj_z` (output gate),
  `in_proj_b` (β), `in_proj_a` (decay input), a depthwise `conv1d` over the q/k/v channels,
  `dt_bias`, `A_log`, a gated RMS `norm` per value head and `out_proj`. Their roles are
  linear_*; they are never returned as q/k/v.

Every layer has `input_layernorm` (before the mixer), `post_attention_layernorm` (before
the MLP) and a SwiGLU MLP. RMS gains are stored as offsets from 1 (the norm multiplies by
1 + w). The vision tower: `patch_embed.proj` (Conv3d), `pos_embed`, blocks with fused
`attn.qkv` ([q; k; v]), `attn.proj`, `norm1`/`norm2`, `mlp.linear_fc1/2`, and the patch
`merger` into the text width. Released checkpoints also carry `mtp.*`
(multi-token-prediction weights that transformers does not load), listed as unclaimed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from terrain.anatomy import Anatomy, Dimensions, TensorRole, TensorSource, classify, rule, unclaimed
from terrain.anatomy.config_fields import optional_int, require_int, sub_config
from terrain.anatomy.shapes import (
    ShapeKey,
    check_layer_count,
    check_layer_set,
    check_shapes,
    layer_types_from_config,
    mlp_and_norm_shapes,
    split_equal,
    split_rows,
)

_D = "decoder"
_V = "vision"
_L = r"layers\.(?P<layer>\d+)\."
_A = _L + r"linear_attn\."
_B = r"visual\.blocks\.(?P<layer>\d+)\."
_WB = r"\.(weight|bias)"
LAYER_TYPES = ("full_attention", "linear_attention")
GAIN_OFFSET = 1.0  # Qwen3_5RMSNorm: x̂ · (1 + w)
# The norms stored as offsets from 1: every norm of the text decoder but the gated norm of
# the linear-attention layers.
OFFSET_ROLES = ("norm_attn", "norm_mlp", "norm_final", "q_norm", "k_norm")
# Qwen3_5TextConfig / Qwen3_5VisionConfig defaults, for fields a config leaves out.
_DEFAULTS = {
    "head_dim": 256,
    "linear_num_key_heads": 16,
    "linear_num_value_heads": 32,
    "linear_key_head_dim": 128,
    "linear_value_head_dim": 128,
    "linear_conv_kernel_dim": 4,
    "full_attention_interval": 4,
    "in_channels": 3,
    "temporal_patch_size": 2,
    "spatial_merge_size": 2,
}

RULES = (
    rule(r"embed_tokens\.weight", "embeddings", "embed_tokens"),
    rule(_L + r"input_layernorm\.weight", _D, "norm_attn"),
    rule(_L + r"post_attention_layernorm\.weight", _D, "norm_mlp"),
    rule(_L + r"mlp\.gate_proj\.weight", _D, "mlp_gate"),
    rule(_L + r"mlp\.up_proj\.weight", _D, "mlp_up"),
    rule(_L + r"mlp\.down_proj\.weight", _D, "mlp_down"),
    rule(_L + r"self_attn\.q_proj" + _WB, _D, "q_and_gate"),
    rule(_L + r"self_attn\.k_proj" + _WB, _D, "k"),
    rule(_L + r"self_attn\.v_proj" + _WB, _D, "v"),
    rule(_L + r"self_attn\.o_proj" + _WB, _D, "o"),
    rule(_L + r"self_attn\.q_norm\.weight", _D, "q_norm"),
    rule(_L + r"self_attn\.k_norm\.weight", _D, "k_norm"),
    rule(_A + r"in_proj_qkv\.weight", _D, "linear_qkv"),
    rule(_A + r"in_proj_z\.weight", _D, "linear_gate"),
    rule(_A + r"in_proj_b\.weight", _D, "linear_beta"),
    rule(_A + r"in_proj_a\.weight", _D, "linear_decay"),
    rule(_A + r"conv1d\.weight", _D, "linear_conv"),
    rule(_A + r"dt_bias", _D, "linear_dt_bias", kind="bias"),
    rule(_A + r"A_log", _D, "linear_a_log", kind="weight"),
    rule(_A + r"norm\.weight", _D, "linear_norm"),
    rule(_A + r"out_proj\.weight", _D, "linear_o"),
    rule(r"norm\.weight", _D, "norm_final"),
    rule(r"lm_head\.weight", "head", "lm_head"),
    rule(r"visual\.patch_embed\.proj" + _WB, _V, "patch_embed"),
    rule(r"visual\.pos_embed\.weight", _V, "embed_positions"),
    rule(_B + r"norm1" + _WB, _V, "norm_attn"),
    rule(_B + r"attn\.qkv" + _WB, _V, "qkv"),
    rule(_B + r"attn\.proj" + _WB, _V, "o"),
    rule(_B + r"norm2" + _WB, _V, "norm_mlp"),
    rule(_B + r"mlp\.linear_fc1" + _WB, _V, "mlp_up"),
    rule(_B + r"mlp\.linear_fc2" + _WB, _V, "mlp_down"),
    rule(r"visual\.merger\.norm" + _WB, _V, "merger_norm"),
    rule(r"visual\.merger\.linear_fc1" + _WB, _V, "merger_up"),
    rule(r"visual\.merger\.linear_fc2" + _WB, _V, "merger_down"),
)
SKIP = (
    unclaimed(
        r"mtp\..+",
        "multi-token-prediction module of the released checkpoint (speculative decoding); "
        "transformers' Qwen3.5 does not load it",
    ),
)
FULL_ROLES = ("q", "attn_gate", "k", "v", "o", "q_norm", "k_norm")
LINEAR_ROLES = (
    "linear_q",
    "linear_k",
    "linear_v",
    "linear_gate",
    "linear_beta",
    "linear_decay",
    "linear_conv",
    "linear_a_log",
    "linear_norm",
    "linear_o",
)
EVERY_LAYER = ("norm_attn", "norm_mlp", "mlp_gate", "mlp_up", "mlp_down")
VISION_ROLES = ("q", "k", "v", "o", "norm_attn", "norm_mlp", "mlp_up", "mlp_down")


def _get(name: str, cfg: Mapping[str, Any], key: str) -> int:
    return optional_int(name, cfg, key, _DEFAULTS[key])


def _layer_types(name: str, text: Mapping[str, Any], n_layers: int) -> tuple[str, ...]:
    given = layer_types_from_config(name, text, n_layers, LAYER_TYPES)
    if given is not None:
        return given
    every = _get(name, text, "full_attention_interval")
    return tuple(
        "full_attention" if (i + 1) % every == 0 else "linear_attention" for i in range(n_layers)
    )


def build(source: TensorSource, config: Mapping[str, Any]) -> Anatomy:
    name = source.name
    multimodal = config.get("model_type") == "qwen3_5"
    text = sub_config(name, config, "text_config") if multimodal else config
    vision = sub_config(name, config, "vision_config") if multimodal else None
    shapes = source.tensor_shapes()
    prefixes = ("model.language_model.", "model.")
    stored, left_out = classify(name, "qwen3_5", shapes, RULES, SKIP, prefixes=prefixes)

    d = require_int(name, text, "hidden_size")
    n_heads = require_int(name, text, "num_attention_heads")
    d_head = _get(name, text, "head_dim")
    key_dim = _get(name, text, "linear_num_key_heads") * _get(name, text, "linear_key_head_dim")
    n_v = _get(name, text, "linear_num_value_heads")
    d_v = _get(name, text, "linear_value_head_dim")
    value_dim = n_v * d_v

    roles: list[TensorRole] = []
    for r in stored:
        if r.role == "q_and_gate":
            roles += split_rows(
                name,
                shapes,
                r,
                [("q", d_head), ("attn_gate", d_head)],
                period=2 * d_head,
                what="Qwen3.5 q_proj holds [q_h | gate_h] of head_dim rows each, per head",
            )
        elif r.role == "linear_qkv":
            roles += split_rows(
                name,
                shapes,
                r,
                [("linear_q", key_dim), ("linear_k", key_dim), ("linear_v", value_dim)],
                what="gated delta net in_proj_qkv holds [q | k | v]: key_dim, key_dim, value_dim",
            )
        elif r.role == "qkv":
            roles += split_equal(
                name, shapes, r, ("q", "k", "v"), what="Qwen3.5 vision attn.qkv holds [q; k; v]"
            )
        else:
            roles.append(r)

    n_layers = require_int(name, text, "num_hidden_layers")
    types = _layer_types(name, text, n_layers)
    full = [i for i, t in enumerate(types) if t == "full_attention"]
    linear = [i for i, t in enumerate(types) if t == "linear_attention"]
    for role in FULL_ROLES:
        check_layer_set(name, roles, _D, role, full, "the config's full_attention layers")
    for role in LINEAR_ROLES:
        check_layer_set(name, roles, _D, role, linear, "the config's linear_attention layers")
    for role in EVERY_LAYER:
        check_layer_count(name, roles, _D, role, n_layers)

    d_ff = require_int(name, text, "intermediate_size")
    vocab = require_int(name, text, "vocab_size")
    n_kv = optional_int(name, text, "num_key_value_heads", n_heads)
    kernel = _get(name, text, "linear_conv_kernel_dim")
    expected: dict[ShapeKey, tuple[int, ...]] = {
        "q": (n_heads * d_head, d),
        "attn_gate": (n_heads * d_head, d),
        "k": (n_kv * d_head, d),
        "v": (n_kv * d_head, d),
        "o": (d, n_heads * d_head),
        "q_norm": (d_head,),
        "k_norm": (d_head,),
        "linear_q": (key_dim, d),
        "linear_k": (key_dim, d),
        "linear_v": (value_dim, d),
        "linear_gate": (value_dim, d),
        "linear_beta": (n_v, d),
        "linear_decay": (n_v, d),
        "linear_conv": (2 * key_dim + value_dim, 1, kernel),
        "linear_a_log": (n_v,),
        "linear_norm": (d_v,),
        "linear_o": (d, value_dim),
        **mlp_and_norm_shapes(d, d_ff),
        "embed_tokens": (vocab, d),
        "lm_head": (vocab, d),
    }
    layers = {_D: n_layers}
    if vision is not None:
        layers[_V] = require_int(name, vision, "depth")
        expected.update(_vision_shapes(name, vision, d))
        for role in VISION_ROLES:
            check_layer_count(name, roles, _V, role, layers[_V])
    check_shapes(name, "qwen3_5", shapes, roles, expected)
    for r in roles:  # dt_bias is a per-value-head vector, checked apart from weights
        if r.role == "linear_dt_bias":
            check_shapes(name, "qwen3_5", shapes, [replace(r, kind="weight")], {r.role: (n_v,)})
    dims = Dimensions(
        d_model=d,
        n_heads=n_heads,
        d_head=d_head,
        d_ff=d_ff,
        vocab_size=vocab,
        layers=layers,
        n_kv_heads=n_kv,
        layer_types={_D: types},
    )
    return Anatomy("qwen3_5", source, dims, tuple(roles), left_out)


def _vision_shapes(
    name: str, vision: Mapping[str, Any], d_text: int
) -> dict[ShapeKey, tuple[int, ...]]:
    dv = require_int(name, vision, "hidden_size")
    ff = require_int(name, vision, "intermediate_size")
    patch = require_int(name, vision, "patch_size")
    merged = dv * _get(name, vision, "spatial_merge_size") ** 2
    out_width = optional_int(name, vision, "out_hidden_size", d_text)
    return {
        **{(_V, r): (dv, dv) for r in ("q", "k", "v", "o")},
        (_V, "mlp_up"): (ff, dv),
        (_V, "mlp_down"): (dv, ff),
        (_V, "norm_attn"): (dv,),
        (_V, "norm_mlp"): (dv,),
        (_V, "patch_embed"): (
            dv,
            _get(name, vision, "in_channels"),
            _get(name, vision, "temporal_patch_size"),
            patch,
            patch,
        ),
        (_V, "embed_positions"): (require_int(name, vision, "num_position_embeddings"), dv),
        (_V, "merger_norm"): (dv,),
        (_V, "merger_up"): (merged, merged),
        (_V, "merger_down"): (out_width, merged),
    }
