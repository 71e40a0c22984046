"""Qwen3: the Llama layout with GQA and a per-head RMS gain on queries and keys.

From transformers' Qwen3Attention: `q_norm` and `k_norm` have size head_dim and are
applied to every head separately (one gain shared by all heads), before RoPE, so the
gauge of Q/K is restricted to orthogonal maps that commute with both the rotary blocks and
the shared gain (quarter turns shared by all heads with the gains swapped, half turns free
per group). `head_dim` is explicit in the config (Qwen3-4B: 128 with hidden 2560 and 32
heads). Everything else is the pre-norm decoder of terrain/families/decoder.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from terrain.anatomy import Anatomy, TensorSource
from terrain.anatomy.config_fields import optional_int, require_int
from terrain.families.decoder import (
    ATTENTION_AND_MLP,
    COMMON_RULES,
    PRE_NORM,
    PRE_NORM_RULES,
    QK_NORM_RULES,
    DecoderVariant,
    build_decoder,
    decoder_family,
)
from terrain.family import register

VARIANT = DecoderVariant(qk_norm="head")


def build(source: TensorSource, config: Mapping[str, Any]) -> Anatomy:
    d_head = optional_int(
        source.name,
        config,
        "head_dim",
        require_int(source.name, config, "hidden_size")
        // require_int(source.name, config, "num_attention_heads"),
    )
    return build_decoder(
        "qwen3",
        source,
        config,
        rules=(*COMMON_RULES, *PRE_NORM_RULES, *QK_NORM_RULES),
        per_layer=(*ATTENTION_AND_MLP, "norm_attn", "norm_mlp", "q_norm", "k_norm"),
        extra_shapes={"q_norm": (d_head,), "k_norm": (d_head,)},
    )


FAMILY = register(
    decoder_family(
        "qwen3",
        build,
        VARIANT,
        PRE_NORM + "; q_norm and k_norm RMS-normalise each head of q and k (one gain of width "
        "d_head shared by the heads) before RoPE",
        {"Qwen3ForCausalLM": 1, "Qwen3Model": 0},
    )
)
