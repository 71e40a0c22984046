"""Llama, Qwen3 and OLMo-3: catalogue entries, derived from their transformers modules.

All three: q, k, v, o and a SwiGLU MLP (down(silu(gate x) ⊙ up x)), RoPE on q and k in the
rotate-half layout (pair f = coordinates (f, f + r/2)), GQA with `num_key_value_heads`,
scores scaled by 1/√d_head, RMSNorm = g ⊙ x / √(mean x² + eps).

- Llama (LlamaDecoderLayer): pre-norm (input_layernorm before attention,
  post_attention_layernorm before the MLP), final norm, LM head. Q/K: per key/value group,
  a scaled rotation on each rotary pair; residual: rotation after folding every gain.
- Qwen3 (Qwen3Attention): as Llama, plus q_norm/k_norm of width d_head applied to every
  head (one gain shared by all heads) before RoPE: Q/K keeps only orthogonal maps that
  commute with the rotary blocks and the shared gain (quarter turns shared by all heads
  with the gains swapped, half turns free per group).
- OLMo-3 (Olmo3DecoderLayer): post-norm — the attention and MLP outputs are normalised
  (post_attention_layernorm, post_feedforward_layernorm) before they are added, and
  nothing normalises a sublayer's input; q_norm/k_norm act on all heads at once (gain per
  channel), so quarter turns may differ per group. No residual rotation: the gain of a
  post-norm acts on the stream's coordinates after the normalisation and cannot be folded
  into a linear map, so only signed permutations of the stream would survive.

RMSNorm in these models casts to float32 before normalising, whatever the module's dtype:
symmetries that change a normalised vector's entries (the residual rotation; the Q/K
gauge under q/k norms) are exact to float32 precision only. The same cast rounds the
stream to float32 at every norm, so a symmetry whose float64 error stays below float32
resolution there (V/O, MLP) usually shows an error of exactly 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from terrain.anatomy import Anatomy
from terrain.symmetry.attention import QK
from terrain.symmetry.catalogue import (
    describes,
    layer_indices,
    output_head,
    standard_layers,
    tensor_of,
)
from terrain.symmetry.groups import RotaryPairs
from terrain.symmetry.layout import Architecture, NormSite, QKNorm, ResidualLayout
from terrain.symmetry.residual import ROTATION
from terrain.symmetry.weights import Projection, Weights

STACK = "decoder"
FLOAT32_NORM = "the library's RMSNorm casts to float32 before normalising"


def rope_parameters(config: Mapping[str, Any], layer_type: str | None = None) -> dict[str, Any]:
    """The RoPE parameters (transformers 5: `rope_parameters`, per layer type for OLMo-3)."""
    params = config.get("rope_parameters")
    if isinstance(params, Mapping):
        if layer_type is not None and isinstance(params.get(layer_type), Mapping):
            return dict(params[layer_type])
        if "rope_theta" in params or "rope_type" in params:
            return dict(params)
    out: dict[str, Any] = {"rope_type": "default", "rope_theta": config.get("rope_theta", 10000.0)}
    scaling = config.get("rope_scaling")  # transformers 4 configs
    if isinstance(scaling, Mapping):
        out.update(scaling)
        out["rope_type"] = scaling.get("rope_type", scaling.get("type", "default"))
    if "partial_rotary_factor" in config:
        out["partial_rotary_factor"] = config["partial_rotary_factor"]
    return out


def rotary_pairs(config: Mapping[str, Any], d_head: int) -> RotaryPairs:
    factor = float(rope_parameters(config).get("partial_rotary_factor", 1.0))
    return RotaryPairs.rotate_half(d_head, int(d_head * factor))


@describes("llama", "qwen3", "olmo3")
def describe(anatomy: Anatomy, config: Mapping[str, Any], weights: Weights) -> Architecture:
    family = anatomy.family
    scope = {"qwen3": "head", "olmo3": "all"}.get(family)

    def qk_norm(stack: str, i: int) -> QKNorm | None:
        if scope is None:
            return None
        return QKNorm(
            tensor_of(anatomy, stack, "q_norm", i),
            tensor_of(anatomy, stack, "k_norm", i),
            "head" if scope == "head" else "all",
        )

    act = str(config.get("hidden_act", "silu"))
    rope = rotary_pairs(config, anatomy.dims.d_head)
    attention, mlp = standard_layers(anatomy, [STACK], act, rope=rope, qk_norm=qk_norm)
    not_applicable: dict[str, str] = {}
    float32 = {ROTATION: FLOAT32_NORM}
    if scope is not None:
        float32[QK] = "q_norm/k_norm: " + FLOAT32_NORM
    residual = None
    head = output_head(anatomy, weights)
    if family == "olmo3":
        not_applicable[ROTATION] = (
            "post-norm: each sublayer's output is RMS-normalised before it is added, so its "
            "gain acts on the stream after the normalisation and cannot be folded into a "
            "linear map; only signed permutations of the stream commute with it"
        )
    elif head is None:
        not_applicable[ROTATION] = (
            "no LM head in the module: the output is the final norm's output, with no linear "
            "map after it to fold its gain into"
        )
    else:
        norms = []
        writers: list[Projection] = []
        for lay, block in zip(attention, mlp, strict=True):
            i = int(lay.where.split(".")[1])
            norms.append(NormSite(tensor_of(anatomy, STACK, "norm_attn", i), (lay.q, lay.k, lay.v)))
            readers = (block.up,) if block.gate is None else (block.gate, block.up)
            norms.append(NormSite(tensor_of(anatomy, STACK, "norm_mlp", i), readers))
            writers += [lay.o, block.down]
        norms.append(NormSite(tensor_of(anatomy, STACK, "norm_final", None), (head,)))
        tables = tuple(r.tensor for r in anatomy.find("embed_tokens"))
        residual = ResidualLayout(tables, tuple(writers), tuple(norms))
    assert layer_indices(anatomy, STACK), "no decoder layers"
    return Architecture(family, tuple(attention), tuple(mlp), residual, not_applicable, float32)
