"""GPT-2, DINOv2 and CLIP: pre-LN transformers with LayerNorm and no RoPE.

- GPT-2 (GPT2Block): q, k, v fused in `c_attn` (Conv1D, split by the anatomy), biases
  everywhere, scores q·k/√d_head with a causal mask, `gelu_new` MLP. Nothing acts on q or
  k after the projection: full GL(d_head) per head on Q/K (biases transformed), V/O too.
- DINOv2 (Dinov2Layer): q, k, v, o with biases, per-channel layer scale λ on the attention
  and MLP outputs (λ ⊙ O z: it multiplies O's rows, so O^h B⁻¹ still undoes V^h → B V^h),
  GELU MLP or SwiGLU (`use_swiglu_ffn`: silu(gate) ⊙ up, then the linear branch scales).
- CLIP (CLIPEncoderLayer, vision and text towers): q, k, v, out_proj with biases,
  quick_gelu MLP; the text tower's causal mask does not touch q or k.

Residual: all three use LayerNorm (mean subtracted), so no residual rotation is tested.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from terrain.anatomy import Anatomy
from terrain.symmetry.catalogue import LAYERNORM_RESIDUAL, describes, standard_layers
from terrain.symmetry.layout import Architecture, AttentionLayout, MlpLayout
from terrain.symmetry.residual import ROTATION
from terrain.symmetry.weights import Weights


@describes("gpt2")
def gpt2(anatomy: Anatomy, config: Mapping[str, Any], weights: Weights) -> Architecture:
    act = str(config.get("activation_function", "gelu_new"))
    attention, mlp = standard_layers(anatomy, ["decoder"], act)
    return Architecture("gpt2", tuple(attention), tuple(mlp), None, {ROTATION: LAYERNORM_RESIDUAL})


@describes("dinov2")
def dinov2(anatomy: Anatomy, config: Mapping[str, Any], weights: Weights) -> Architecture:
    act = "silu" if config.get("use_swiglu_ffn") else str(config.get("hidden_act", "gelu"))
    attention, mlp = standard_layers(anatomy, ["encoder"], act)
    return Architecture(
        "dinov2", tuple(attention), tuple(mlp), None, {ROTATION: LAYERNORM_RESIDUAL}
    )


@describes("clip")
def clip(anatomy: Anatomy, config: Mapping[str, Any], weights: Weights) -> Architecture:
    attention: list[AttentionLayout] = []
    mlp: list[MlpLayout] = []
    for stack in ("vision", "text"):
        if not anatomy.layers(stack, "q"):
            continue
        sub = config.get(f"{stack}_config")
        cfg = sub if isinstance(sub, Mapping) else config  # a single-tower checkpoint
        n_heads = int(cfg.get("num_attention_heads", anatomy.dims.n_heads))
        d_head = int(cfg.get("hidden_size", anatomy.dims.d_model)) // n_heads
        a, m = standard_layers(
            anatomy,
            [stack],
            str(cfg.get("hidden_act", "quick_gelu")),
            heads=(n_heads, n_heads, d_head),
        )
        attention += a
        mlp += m
    return Architecture("clip", tuple(attention), tuple(mlp), None, {ROTATION: LAYERNORM_RESIDUAL})
