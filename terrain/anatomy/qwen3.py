"""Qwen3: the Llama layout with GQA and a per-head RMS gain on queries and keys.

From transformers' Qwen3Attention: `q_norm` and `k_norm` have size head_dim and are
applied to every head separately, before RoPE (so the gauge of Q/K is restricted to
maps that commute with both the rotary blocks and a per-head RMS normalisation).
`head_dim` is explicit in the config (Qwen3-4B: 128 with hidden 2560 and 32 heads).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from terrain.anatomy.base import Anatomy, TensorSource
from terrain.anatomy.config_fields import optional_int, require_int
from terrain.anatomy.llama import (
    ATTENTION_AND_MLP,
    COMMON_RULES,
    PRE_NORM_RULES,
    QK_NORM_RULES,
    build_decoder,
)
from terrain.anatomy.registry import register


@register("qwen3", model_types=("qwen3",))
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
