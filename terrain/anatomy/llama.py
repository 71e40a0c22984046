"""Llama-style decoder-only LMs: Llama here, and the layout Qwen3 and OLMo-3 build on.

Layout, from transformers' LlamaForCausalLM: `model.embed_tokens`, per layer
`model.layers.N.self_attn.{q,k,v,o}_proj` (GQA: k and v have n_kv_heads·head_dim rows),
`input_layernorm` (pre-attention RMS gain), `post_attention_layernorm` (the pre-MLP
norm, despite its name), `mlp.{gate,up,down}_proj` (SwiGLU), `model.norm` and `lm_head`
(absent when tied to the embedding). Biases appear when `attention_bias`/`mlp_bias` are set.
Weights may carry the `model.` prefix (ForCausalLM) or none (the bare Model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from terrain.anatomy.base import (
    Anatomy,
    Dimensions,
    Rule,
    ShapeKey,
    TensorSource,
    Unclaimed,
    check_layer_count,
    check_shapes,
    classify,
    layer_types_from_config,
    rule,
    unclaimed,
)
from terrain.anatomy.config_fields import optional_int, require_int
from terrain.anatomy.registry import register

L = r"layers\.(?P<layer>\d+)\."
WB = r"\.(weight|bias)"
STACK = "decoder"

COMMON_RULES = (
    rule(r"embed_tokens\.weight", "embeddings", "embed_tokens"),
    rule(L + r"self_attn\.q_proj" + WB, STACK, "q"),
    rule(L + r"self_attn\.k_proj" + WB, STACK, "k"),
    rule(L + r"self_attn\.v_proj" + WB, STACK, "v"),
    rule(L + r"self_attn\.o_proj" + WB, STACK, "o"),
    rule(L + r"mlp\.gate_proj" + WB, STACK, "mlp_gate"),
    rule(L + r"mlp\.up_proj" + WB, STACK, "mlp_up"),
    rule(L + r"mlp\.down_proj" + WB, STACK, "mlp_down"),
    rule(r"norm\.weight", STACK, "norm_final"),
    rule(r"lm_head\.weight", "head", "lm_head"),
)
PRE_NORM_RULES = (
    rule(L + r"input_layernorm\.weight", STACK, "norm_attn"),
    rule(L + r"post_attention_layernorm\.weight", STACK, "norm_mlp"),
)
QK_NORM_RULES = (
    rule(L + r"self_attn\.q_norm\.weight", STACK, "q_norm"),
    rule(L + r"self_attn\.k_norm\.weight", STACK, "k_norm"),
)
COMMON_SKIP = (
    unclaimed(
        L + r"self_attn\.rotary_emb\.inv_freq",
        "rotary frequency buffer saved by old checkpoints; recomputed from the config",
    ),
)
PREFIXES = ("model.",)
LAYER_TYPES = ("full_attention", "sliding_attention")
ATTENTION_AND_MLP = ("q", "k", "v", "o", "mlp_gate", "mlp_up", "mlp_down")


def decoder_dimensions(name: str, config: Mapping[str, Any]) -> Dimensions:
    """Widths, heads (with GQA key/value heads), layers and layer types of a decoder-only LM."""
    d_model = require_int(name, config, "hidden_size")
    n_heads = require_int(name, config, "num_attention_heads")
    n_layers = require_int(name, config, "num_hidden_layers")
    types = layer_types_from_config(name, config, n_layers, LAYER_TYPES)
    return Dimensions(
        d_model=d_model,
        n_heads=n_heads,
        d_head=optional_int(name, config, "head_dim", d_model // n_heads),
        d_ff=require_int(name, config, "intermediate_size"),
        vocab_size=require_int(name, config, "vocab_size"),
        layers={STACK: n_layers},
        n_kv_heads=optional_int(name, config, "num_key_value_heads", n_heads),
        layer_types={STACK: types} if types else {},
    )


def decoder_shapes(dims: Dimensions) -> dict[ShapeKey, tuple[int, ...]]:
    """Shapes every Llama-style decoder shares (as nn.Linear reads them: (out, in))."""
    d, inner, kv = dims.d_model, dims.n_heads * dims.d_head, dims.n_kv_heads * dims.d_head
    return {
        "q": (inner, d),
        "k": (kv, d),
        "v": (kv, d),
        "o": (d, inner),
        "mlp_gate": (dims.d_ff, d),
        "mlp_up": (dims.d_ff, d),
        "mlp_down": (d, dims.d_ff),
        "norm_attn": (d,),
        "norm_mlp": (d,),
        "norm_final": (d,),
        "embed_tokens": (dims.vocab_size, d),
        "lm_head": (dims.vocab_size, d),
    }


def build_decoder(
    family: str,
    source: TensorSource,
    config: Mapping[str, Any],
    *,
    rules: Sequence[Rule],
    skip: Sequence[Unclaimed] = COMMON_SKIP,
    per_layer: Sequence[str],
    extra_shapes: Mapping[ShapeKey, tuple[int, ...]] | None = None,
) -> Anatomy:
    """Classify, count layers of every `per_layer` role and check shapes against the config."""
    name = source.name
    shapes = source.tensor_shapes()
    roles, left_out = classify(name, family, shapes, rules, skip, prefixes=PREFIXES)
    dims = decoder_dimensions(name, config)
    for role in per_layer:
        check_layer_count(name, roles, STACK, role, dims.layers[STACK])
    expected = decoder_shapes(dims)
    expected.update(extra_shapes or {})
    check_shapes(name, family, shapes, roles, expected)
    return Anatomy(family, source, dims, tuple(roles), left_out)


@register("llama", model_types=("llama",))
def build(source: TensorSource, config: Mapping[str, Any]) -> Anatomy:
    return build_decoder(
        "llama",
        source,
        config,
        rules=(*COMMON_RULES, *PRE_NORM_RULES),
        per_layer=(*ATTENTION_AND_MLP, "norm_attn", "norm_mlp"),
    )
