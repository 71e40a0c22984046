"""Qwen3.5 (text decoder): the catalogue entry, from transformers' Qwen3_5DecoderLayer.

Layers are "full_attention" (Qwen3_5Attention) or "linear_attention" (a gated delta net);
every layer is pre-norm with `input_layernorm` before its mixer and
`post_attention_layernorm` before a SwiGLU MLP. Qwen3_5RMSNorm multiplies by (1 + w), in
float32 whatever the dtype.

- Full attention: q_proj holds [q_h | gate_h] per head; q_norm/k_norm (one gain of width
  d_head shared by all heads) before RoPE, which rotates only the first
  partial_rotary_factor·d_head coordinates (pairs (i, i + r/2)); GQA. Q/K: as Qwen3 —
  quarter/half turns of the rotary pairs with the gains swapped, sign flips on the free
  coordinates. The output σ(gate) ⊙ attn is elementwise per channel, so V/O keeps only
  monomial maps, with the gate rows permuted alongside (terrain.symmetry.attention).
- Linear attention layers: their q/k/v pass a depthwise causal conv, an L2 norm and the
  delta rule; no per-head gauge of them is catalogued (only the residual rotation and the
  MLP symmetries cover these layers).
- Residual: pre-norm RMS everywhere, so the stream rotates after folding (1 + w) into the
  readers: q_proj (q and gate rows alike), k, v of full layers; in_proj_qkv, in_proj_z,
  in_proj_b, in_proj_a of linear layers; gate and up of every MLP; the LM head. Writers:
  o_proj, out_proj, down_proj.
- The vision tower is not run on text inputs and is left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from terrain.anatomy import Anatomy
from terrain.families.decoder import FLOAT32_NORM, NO_LM_HEAD, rotary_pairs
from terrain.families.qwen3_5.anatomy import GAIN_OFFSET
from terrain.symmetry.attention import QK
from terrain.symmetry.catalogue import (
    attention_layout,
    layer_indices,
    mlp_layout,
    one,
    output_head,
    projection,
    tensor_of,
)
from terrain.symmetry.layout import (
    Architecture,
    AttentionLayout,
    MlpLayout,
    NormSite,
    QKNorm,
    ResidualLayout,
)
from terrain.symmetry.residual import ROTATION
from terrain.symmetry.weights import Projection, Weights

S = "decoder"


def _stored(anatomy: Anatomy, role: str, i: int) -> Projection:
    """The whole stored tensor of a (possibly fused) role: every row reads the stream."""
    entry = one(anatomy, S, role, i, "weight")
    if entry is None:
        raise KeyError(f"model {anatomy.model_name!r}: no {S}.{role} in layer {i}")
    return Projection(entry.tensor, transposed=entry.transpose)


def describe(anatomy: Anatomy, config: Mapping[str, Any], weights: Weights) -> Architecture:
    text = config.get("text_config")
    cfg: Mapping[str, Any] = text if isinstance(text, Mapping) else config
    dims = anatomy.dims
    heads = (dims.n_heads, dims.n_kv_heads, dims.d_head)
    rope = rotary_pairs(cfg, dims.d_head)
    act = str(cfg.get("hidden_act", "silu"))
    attention: list[AttentionLayout] = []
    mlp: list[MlpLayout] = []
    writers: list[Projection] = []
    norms: list[NormSite] = []
    for i in layer_indices(anatomy, S, "mlp_down"):
        if one(anatomy, S, "q", i, "weight") is not None:  # full attention
            lay = attention_layout(
                anatomy,
                S,
                i,
                heads,
                rope=rope,
                qk_norm=QKNorm(
                    tensor_of(anatomy, S, "q_norm", i),
                    tensor_of(anatomy, S, "k_norm", i),
                    "head",
                    GAIN_OFFSET,
                ),
            )
            lay = AttentionLayout(
                lay.where,
                lay.q,
                lay.k,
                lay.v,
                lay.o,
                lay.n_heads,
                lay.n_kv_heads,
                lay.d_head,
                rope=lay.rope,
                qk_norm=lay.qk_norm,
                output_gate=projection(anatomy, S, "attn_gate", i),
            )
            attention.append(lay)
            readers: tuple[Projection, ...] = (_stored(anatomy, "q", i), lay.k, lay.v)
            writers.append(lay.o)
        else:  # gated delta net
            readers = (
                _stored(anatomy, "linear_q", i),
                *(
                    projection(anatomy, S, r, i)
                    for r in ("linear_gate", "linear_beta", "linear_decay")
                ),
            )
            writers.append(projection(anatomy, S, "linear_o", i))
        norms.append(NormSite(tensor_of(anatomy, S, "norm_attn", i), readers, GAIN_OFFSET))
        block = mlp_layout(anatomy, S, i, act)
        mlp.append(block)
        norms.append(NormSite(tensor_of(anatomy, S, "norm_mlp", i), block.readers, GAIN_OFFSET))
        writers.append(block.down)
    head = output_head(anatomy, weights)
    not_applicable: dict[str, str] = {}
    residual = None
    if head is None:
        not_applicable[ROTATION] = NO_LM_HEAD
    else:
        norms.append(NormSite(tensor_of(anatomy, S, "norm_final", None), (head,), GAIN_OFFSET))
        tables = tuple(r.tensor for r in anatomy.find("embed_tokens"))
        residual = ResidualLayout(tables, tuple(writers), tuple(norms))
    float32 = {ROTATION: FLOAT32_NORM, QK: "q_norm/k_norm: " + FLOAT32_NORM}
    return Architecture("qwen3_5", tuple(attention), tuple(mlp), residual, not_applicable, float32)
