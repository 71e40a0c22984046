"""OLMo-3: the Llama layout with post-norms and q/k norms over all heads at once.

From transformers' Olmo3DecoderLayer: there is no pre-norm; `post_attention_layernorm`
normalises the attention output and `post_feedforward_layernorm` the MLP output before
each is added to the residual (roles norm_attn_post, norm_mlp_post). Olmo3Attention
applies `q_norm` (size n_heads·head_dim) and `k_norm` (n_kv_heads·head_dim) to the whole
projected vector before splitting heads and RoPE, so Q/K gauges must preserve the RMS
over all heads together (quarter turns may differ per group). `layer_types` alternates
"sliding_attention" (window `sliding_window`) and "full_attention"; a config without the
field gets transformers' default, 3 sliding then 1 full, repeating. No residual rotation:
the gain of a post-norm acts on the stream after the normalisation and cannot be folded
into a linear map, so only signed permutations of the stream would survive.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from terrain.anatomy import Anatomy, TensorSource, rule
from terrain.anatomy.config_fields import require_int
from terrain.families.decoder import (
    ATTENTION_AND_MLP,
    COMMON_RULES,
    QK_NORM_RULES,
    STACK,
    DecoderVariant,
    L,
    build_decoder,
    decoder_dimensions,
    decoder_family,
)
from terrain.family import register

VARIANT = DecoderVariant(qk_norm="all", post_norm=True, rotary_per_layer_type=True)
POST_NORM_RULES = (
    rule(L + r"post_attention_layernorm\.weight", STACK, "norm_attn_post"),
    rule(L + r"post_feedforward_layernorm\.weight", STACK, "norm_mlp_post"),
)


def default_layer_types(n_layers: int) -> list[str]:
    """transformers' Olmo3Config default: every fourth layer full, the others sliding."""
    return ["full_attention" if (i + 1) % 4 == 0 else "sliding_attention" for i in range(n_layers)]


def build(source: TensorSource, config: Mapping[str, Any]) -> Anatomy:
    if config.get("layer_types") is None:
        n_layers = require_int(source.name, config, "num_hidden_layers")
        config = {**config, "layer_types": default_layer_types(n_layers)}
    dims = decoder_dimensions(source.name, config)
    d = dims.d_model
    return build_decoder(
        "olmo3",
        source,
        config,
        rules=(*COMMON_RULES, *POST_NORM_RULES, *QK_NORM_RULES),
        per_layer=(*ATTENTION_AND_MLP, "norm_attn_post", "norm_mlp_post", "q_norm", "k_norm"),
        extra_shapes={
            "q_norm": (dims.n_heads * dims.d_head,),
            "k_norm": (dims.n_kv_heads * dims.d_head,),
            "norm_attn_post": (d,),
            "norm_mlp_post": (d,),
        },
    )


FAMILY = register(
    decoder_family(
        "olmo3",
        build,
        VARIANT,
        "post-norm RMSNorm: each sublayer's output is normalised before it is added "
        "(post_attention_layernorm, post_feedforward_layernorm), nothing normalises a "
        "sublayer's input; q_norm and k_norm over all heads at once (a gain per channel) "
        "before RoPE; the final norm",
        {"Olmo3ForCausalLM": 1, "Olmo3Model": 0},
    )
)
