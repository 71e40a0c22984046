"""Llama-style decoder-only LMs: what Llama, Qwen3 and OLMo-3 share (and GPT-2's and
Qwen3.5's token embeddings, masks and RoPE parameters). Each family says which
`DecoderVariant` it is; nothing here branches on a family's name.

Layout, from transformers' LlamaForCausalLM: `model.embed_tokens`, per layer
`model.layers.N.self_attn.{q,k,v,o}_proj` (GQA: k and v have n_kv_heads·head_dim rows),
`input_layernorm` (pre-attention RMS gain), `post_attention_layernorm` (the pre-MLP
norm, despite its name), `mlp.{gate,up,down}_proj` (SwiGLU), `model.norm` and `lm_head`
(absent when tied to the embedding). Biases appear when `attention_bias`/`mlp_bias` are set.
Weights may carry the `model.` prefix (ForCausalLM) or none (the bare Model).

Symmetries: SwiGLU MLP, RoPE on q and k (rotate-half pairs (f, f + r/2)), GQA, RMSNorm.
Q/K: per key/value group a scaled rotation on each rotary pair, less under q/k norms;
residual: rotation after folding every gain (pre-norm only). RMSNorm casts to float32
whatever the dtype: the residual rotation and the Q/K gauge under q/k norms are exact to
float32 only; V/O and MLP usually show an error of 0.

Reference. Pre-norm: h = x + O·attn(rms(x)); y = h + W_down(silu(W_gate n) ⊙ W_up n),
n = rms(h). Post-norm: h = x + rms(O·attn(x)); y = h + rms(MLP(h)). q/k norms before RoPE
(pairs (i, i + r/2) by position·θ^(−2i/r)); causal (sliding layers: within the window)
and padding masks. Embeddings: the token table (plus GPT-2's learned positions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from terrain.anatomy import (
    Anatomy,
    Dimensions,
    Rule,
    TensorSource,
    Unclaimed,
    classify,
    rule,
    unclaimed,
)
from terrain.anatomy.config_fields import optional_int, require_int
from terrain.anatomy.shapes import (
    ShapeKey,
    check_layer_count,
    check_shapes,
    layer_types_from_config,
    mlp_and_norm_shapes,
)
from terrain.family import (
    Absent,
    Builder,
    Family,
    Norms,
    Predictor,
    StackCount,
    TextConvention,
    TransformersModule,
    per_type,
)
from terrain.reference import ops
from terrain.reference.family import (
    Block,
    BlockFn,
    Context,
    FamilyReference,
    NotReproducedError,
    maybe,
    read,
)
from terrain.symmetry.attention import QK
from terrain.symmetry.catalogue import (
    Describer,
    layer_indices,
    output_head,
    standard_layers,
    tensor_of,
)
from terrain.symmetry.groups import RotaryPairs
from terrain.symmetry.layout import Architecture, NormSite, QKNorm, ResidualLayout
from terrain.symmetry.residual import ROTATION
from terrain.symmetry.weights import Projection, Weights
from terrain.tracing import config_int, head_calls

L = r"layers\.(?P<layer>\d+)\."
WB = r"\.(weight|bias)"
STACK = "decoder"
STACK_COUNTS = {STACK: StackCount(None, "num_hidden_layers")}
FLOAT32_NORM = "the library's RMSNorm casts to float32 before normalising"
NO_LM_HEAD = (
    "no LM head in the module: the output is the final norm's output, with no linear map "
    "after it to fold its gain into"
)
PRE_NORM = (
    "pre-norm RMSNorm: input_layernorm before attention, post_attention_layernorm before "
    "the MLP (despite its name), and the final norm"
)
DECODER_TEXT = TextConvention("the module itself (decoder-only)")


@dataclass(frozen=True)
class DecoderVariant:
    """What sets one Llama-style decoder apart: where q_norm/k_norm act (None; "head": each
    head, one gain of width d_head, Qwen3; "all": all heads at once, OLMo-3), whether the
    sublayer outputs are normalised before the add instead of their inputs (OLMo-3), and
    whether transformers makes one rotary table per layer type (OLMo-3) instead of one."""

    qk_norm: str | None = None
    post_norm: bool = False
    rotary_per_layer_type: bool = False


# Anatomy ---------------------------------------------------------------------------------

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
        **mlp_and_norm_shapes(d, dims.d_ff),
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


# Symmetries ------------------------------------------------------------------------------


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


def describer(variant: DecoderVariant) -> Describer:
    """The catalogue entry of a Llama-style decoder of this variant."""
    scope = variant.qk_norm

    def describe(anatomy: Anatomy, config: Mapping[str, Any], weights: Weights) -> Architecture:
        def qk_norm(stack: str, i: int) -> QKNorm | None:
            q, k = (tensor_of(anatomy, stack, r, i) for r in ("q_norm", "k_norm"))
            return QKNorm(q, k, "head" if scope == "head" else "all")

        act = str(config.get("hidden_act", "silu"))
        rope = rotary_pairs(config, anatomy.dims.d_head)
        attention, mlp = standard_layers(
            anatomy, [STACK], act, rope=rope, qk_norm=None if scope is None else qk_norm
        )
        not_applicable: dict[str, str] = {}
        float32 = {ROTATION: FLOAT32_NORM}
        if scope is not None:
            float32[QK] = "q_norm/k_norm: " + FLOAT32_NORM
        residual = None
        head = output_head(anatomy, weights)
        if variant.post_norm:
            not_applicable[ROTATION] = (
                "post-norm: each sublayer's output is RMS-normalised before it is added, so its "
                "gain acts on the stream after the normalisation and cannot be folded into a "
                "linear map; only signed permutations of the stream commute with it"
            )
        elif head is None:
            not_applicable[ROTATION] = NO_LM_HEAD
        else:
            norms = []
            writers: list[Projection] = []
            for lay, block in zip(attention, mlp, strict=True):
                i = int(lay.where.split(".")[1])
                q_site = NormSite(tensor_of(anatomy, STACK, "norm_attn", i), (lay.q, lay.k, lay.v))
                norms.append(q_site)
                norms.append(NormSite(tensor_of(anatomy, STACK, "norm_mlp", i), block.readers))
                writers += [lay.o, block.down]
            norms.append(NormSite(tensor_of(anatomy, STACK, "norm_final", None), (head,)))
            tables = tuple(r.tensor for r in anatomy.find("embed_tokens"))
            residual = ResidualLayout(tables, tuple(writers), tuple(norms))
        assert layer_indices(anatomy, STACK), "no decoder layers"
        return Architecture(
            anatomy.family, tuple(attention), tuple(mlp), residual, not_applicable, float32
        )

    return describe


# Reference -------------------------------------------------------------------------------


def lin(anatomy: Anatomy, ctx: Context, role: str, i: int, h: torch.Tensor) -> torch.Tensor:
    """A decoder layer's projection of `h`, with its bias when stored."""
    return ops.linear(h, read(anatomy, ctx, STACK, role, i), maybe(anatomy, ctx, STACK, role, i))


def allowed(anatomy: Anatomy, ctx: Context, i: int, n: int, device: torch.device) -> torch.Tensor:
    """Causal (within the window of a sliding layer) and padding masks of layer i."""
    window = None
    if anatomy.layer_type(STACK, i) == "sliding_attention":
        window = int(ctx.config["sliding_window"])
    causal = ops.causal_mask(n, device, window)
    mask = ctx.inputs.get("attention_mask")
    return causal if mask is None else causal & ops.padding_mask(mask)


def token_embeddings(anatomy: Anatomy, stack: str, ctx: Context) -> torch.Tensor:
    table = ctx.read(anatomy, anatomy.token_embedding())
    x = ops.embed(ctx.inputs["input_ids"], table)
    positions = maybe(anatomy, ctx, "embeddings", "embed_positions", None, "weight")
    if positions is not None:  # GPT-2's learned positions
        x = x + positions[: x.shape[1]]
    return x


def _inv_freq(anatomy: Anatomy, ctx: Context, i: int) -> torch.Tensor:
    params = rope_parameters(ctx.config, anatomy.layer_type(STACK, i))
    rope_type = params.get("rope_type", "default")
    if rope_type != "default":
        raise NotReproducedError(f"RoPE type {rope_type!r} has no reference (only 'default')")
    rotary = int(anatomy.dims.d_head * float(params.get("partial_rotary_factor", 1.0)))
    return ops.rope_inv_freq(rotary, float(params.get("rope_theta", 10000.0)))


def block(variant: DecoderVariant) -> BlockFn:
    """The reference block of a Llama-style decoder of this variant."""

    def decoder_block(anatomy: Anatomy, b: Block, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        i, d_head = b.layer, anatomy.dims.d_head
        eps = float(ctx.config.get("rms_norm_eps", 1e-6))

        def rms(role: str, h: torch.Tensor) -> torch.Tensor:
            return ops.rms_norm(h, read(anatomy, ctx, STACK, role, i), eps)

        def attend(h: torch.Tensor) -> torch.Tensor:
            q, k, v = (lin(anatomy, ctx, r, i, h) for r in ("q", "k", "v"))
            if variant.qk_norm == "all":  # one RMS over all heads at once
                q, k = rms("q_norm", q), rms("k_norm", k)
            q, k, v = (ops.split_heads(t, d_head) for t in (q, k, v))
            if variant.qk_norm == "head":  # one RMS per head, gain shared by the heads
                q, k = rms("q_norm", q), rms("k_norm", k)
            positions = torch.arange(h.shape[1], device=h.device)
            inv_freq = _inv_freq(anatomy, ctx, i).to(h.device)
            q, k = ops.apply_rope(q, positions, inv_freq), ops.apply_rope(k, positions, inv_freq)
            mask = allowed(anatomy, ctx, i, h.shape[1], h.device)
            a = ops.attention(q, k, v, scaling=d_head**-0.5, allowed=mask)
            return lin(anatomy, ctx, "o", i, ops.merge_heads(a))

        def mlp(h: torch.Tensor) -> torch.Tensor:
            act = str(ctx.config.get("hidden_act", "silu"))
            gate = ops.activation(act, lin(anatomy, ctx, "mlp_gate", i, h))
            return lin(anatomy, ctx, "mlp_down", i, gate * lin(anatomy, ctx, "mlp_up", i, h))

        if variant.post_norm:
            h = x + rms("norm_attn_post", attend(x))
            return h + rms("norm_mlp_post", mlp(h))
        h = x + attend(rms("norm_attn", x))
        return h + mlp(rms("norm_mlp", h))

    return decoder_block


def one_stack(anatomy: Anatomy) -> list[str]:
    return [STACK]


# Call census -----------------------------------------------------------------------------


def census(variant: DecoderVariant, heads: Mapping[str, int]) -> Predictor:
    """One token lookup; one rotary table (or one per layer type; the seed's older OLMo-3
    trace shows one); per layer q k v o, gate up down, one SiLU and two RMSNorms (plus
    q_norm and k_norm), the final norm; `heads`: the LM head's calls per architecture."""

    def predict(config: Mapping[str, Any], architecture: str) -> dict[str, int]:
        n = config_int(config, "num_hidden_layers")
        head = head_calls(architecture, heads, str(config.get("model_type")))
        qk_norms = 0 if variant.qk_norm is None else 2
        types = config.get("layer_types") or ["sliding_attention", "full_attention"]
        rotary = len(set(types)) if variant.rotary_per_layer_type else 1
        return {
            "embedding": 1,
            "rotary": rotary,
            "linear": 7 * n + head,
            "norm": (2 + qk_norms) * n + 1,
            "activation": n,
        }

    return predict


def decoder_family(
    name: str, build: Builder, variant: DecoderVariant, norms: str, heads: Mapping[str, int]
) -> Family:
    """A Llama-style family of one model_type (`name`); `heads`: as in `census`."""
    types = (name,)
    return Family(
        name=name,
        model_types=types,
        anatomy=build,
        norms=Norms(norms),
        heads=Absent("one decoder stack: the anatomy's dimensions give its heads (with GQA)"),
        stack_counts=per_type(types, STACK_COUNTS),
        symmetry=describer(variant),
        reference=FamilyReference(one_stack, block(variant), token_embeddings),
        census=per_type(types, census(variant, heads)),
        text=per_type(types, DECODER_TEXT),
        module=TransformersModule(),
    )
