"""Llama: the pre-norm Llama-style decoder (RoPE, GQA, SwiGLU), from LlamaForCausalLM.

The layout, catalogue entry, reference block and call census are the shared ones of
terrain/families/decoder.py with no q/k norm: Q/K keeps, per key/value group, a scaled
rotation on each rotary pair; the residual rotates after folding every gain.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from terrain.anatomy import Anatomy, TensorSource
from terrain.families.decoder import (
    ATTENTION_AND_MLP,
    COMMON_RULES,
    PRE_NORM,
    PRE_NORM_RULES,
    DecoderVariant,
    build_decoder,
    decoder_family,
)
from terrain.family import register

VARIANT = DecoderVariant()


def build(source: TensorSource, config: Mapping[str, Any]) -> Anatomy:
    return build_decoder(
        "llama",
        source,
        config,
        rules=(*COMMON_RULES, *PRE_NORM_RULES),
        per_layer=(*ATTENTION_AND_MLP, "norm_attn", "norm_mlp"),
    )


FAMILY = register(
    decoder_family("llama", build, VARIANT, PRE_NORM, {"LlamaForCausalLM": 1, "LlamaModel": 0})
)
