"""GPT-2: fused QKV stored as Conv1D, learned positions, pre-LN blocks.

Layout, from transformers' GPT2LMHeadModel: `transformer.wte` (tokens), `transformer.wpe`
(positions), per block `transformer.h.N.ln_1`, `attn.c_attn` (q, k and v fused),
`attn.c_proj` (O), `ln_2`, `mlp.c_fc` (up), `mlp.c_proj` (down), then `transformer.ln_f`;
`lm_head` is tied to `wte` and not stored. Conv1D stores its weight as (in, out), so every
projection is read transposed, giving (out, in) like nn.Linear; `c_attn` is (d_model,
3·d_model) and its columns are [q | k | v]. Old checkpoints also store the causal-mask
buffers `attn.bias` and `attn.masked_bias`, which are listed as unclaimed.

Symmetries, from GPT2Block: q, k, v split from `c_attn`, biases everywhere, scores
q·k/√d_head with a causal mask, `gelu_new` MLP. Nothing acts on q or k after the
projection: full GL(d_head) per head on Q/K (biases transformed), V/O too. LayerNorm (mean
subtracted): no residual rotation is tested.

Reference: h = x + O·attn(LN₁ x);  y = h + W_down gelu_new(W_up LN₂ h) (+ biases), causal,
scores · d_head^-1/2; embeddings: wte[ids] + wpe[0..T).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch

from terrain import family
from terrain.anatomy import Anatomy, Dimensions, TensorSource, classify, rule, unclaimed
from terrain.anatomy.config_fields import optional_int, require_int
from terrain.anatomy.shapes import check_layer_count, check_shapes, mlp_and_norm_shapes, split_fused
from terrain.families.decoder import DECODER_TEXT, allowed, lin, one_stack, token_embeddings
from terrain.reference import ops
from terrain.reference.family import (
    Block,
    Context,
    FamilyReference,
    NotReproducedError,
    maybe,
    read,
)
from terrain.symmetry.catalogue import LAYERNORM_RESIDUAL, standard_layers
from terrain.symmetry.layout import Architecture
from terrain.symmetry.residual import ROTATION
from terrain.symmetry.weights import Weights
from terrain.tracing import config_int, head_calls

MODEL_TYPES = ("gpt2",)

_L = r"h\.(?P<layer>\d+)\."
_WB = r"\.(weight|bias)"
_STACK = "decoder"
# Conv1D weights: read transposed.
_CONV1D = {"qkv", "o", "mlp_up", "mlp_down"}

RULES = (
    rule(r"wte\.weight", "embeddings", "embed_tokens"),
    rule(r"wpe\.weight", "embeddings", "embed_positions"),
    rule(_L + r"ln_1" + _WB, _STACK, "norm_attn"),
    rule(_L + r"attn\.c_attn" + _WB, _STACK, "qkv"),
    rule(_L + r"attn\.c_proj" + _WB, _STACK, "o"),
    rule(_L + r"ln_2" + _WB, _STACK, "norm_mlp"),
    rule(_L + r"mlp\.c_fc" + _WB, _STACK, "mlp_up"),
    rule(_L + r"mlp\.c_proj" + _WB, _STACK, "mlp_down"),
    rule(r"ln_f" + _WB, _STACK, "norm_final"),
    rule(r"lm_head\.weight", "head", "lm_head"),
)
SKIP = (
    unclaimed(
        _L + r"attn\.(bias|masked_bias)",
        "causal-mask buffer saved by old GPT-2 checkpoints, not a parameter",
    ),
)


def build(source: TensorSource, config: Mapping[str, Any]) -> Anatomy:
    name = source.name
    shapes = source.tensor_shapes()
    stored, left_out = classify(name, "gpt2", shapes, RULES, SKIP, prefixes=("transformer.",))
    roles = split_fused(
        name,
        shapes,
        [replace(r, transpose=r.role in _CONV1D and r.kind == "weight") for r in stored],
        "qkv",
        ("q", "k", "v"),
        what="GPT-2 c_attn holds q, k, v side by side: (d_model, 3·d_model)",
    )
    d_model = require_int(name, config, "n_embd")
    n_heads = require_int(name, config, "n_head")
    d_ff = optional_int(name, config, "n_inner", 4 * d_model)
    dims = Dimensions(
        d_model=d_model,
        n_heads=n_heads,
        d_head=d_model // n_heads,
        d_ff=d_ff,
        vocab_size=require_int(name, config, "vocab_size"),
        layers={_STACK: require_int(name, config, "n_layer")},
    )
    for role in ("q", "k", "v", "o", "mlp_up", "mlp_down", "norm_attn", "norm_mlp"):
        check_layer_count(name, roles, _STACK, role, dims.layers[_STACK])
    d = d_model
    check_shapes(
        name,
        "gpt2",
        shapes,
        roles,
        {
            **{r: (d, d) for r in ("q", "k", "v", "o")},
            **mlp_and_norm_shapes(d, d_ff),  # no mlp_gate role here to read its entry
            "embed_tokens": (dims.vocab_size, d),
            "embed_positions": (require_int(name, config, "n_positions"), d),
            "lm_head": (dims.vocab_size, d),
        },
    )
    return Anatomy("gpt2", source, dims, tuple(roles), left_out)


# Symmetries ------------------------------------------------------------------------------


def describe(anatomy: Anatomy, config: Mapping[str, Any], weights: Weights) -> Architecture:
    act = str(config.get("activation_function", "gelu_new"))
    attention, mlp = standard_layers(anatomy, [_STACK], act)
    return Architecture("gpt2", tuple(attention), tuple(mlp), None, {ROTATION: LAYERNORM_RESIDUAL})


# Reference -------------------------------------------------------------------------------


def block(anatomy: Anatomy, b: Block, x: torch.Tensor, ctx: Context) -> torch.Tensor:
    i, d_head = b.layer, anatomy.dims.d_head
    eps = float(ctx.config.get("layer_norm_epsilon", 1e-5))
    if ctx.config.get("scale_attn_by_inverse_layer_idx") or ctx.config.get(
        "reorder_and_upcast_attn"
    ):
        raise NotReproducedError("GPT-2 attention variants (per-layer scaling, upcast) not written")
    scaling = d_head**-0.5 if ctx.config.get("scale_attn_weights", True) else 1.0

    def ln(role: str, h: torch.Tensor) -> torch.Tensor:
        gain = read(anatomy, ctx, _STACK, role, i)
        return ops.layer_norm(h, gain, maybe(anatomy, ctx, _STACK, role, i), eps)

    n = ln("norm_attn", x)
    q, k, v = (ops.split_heads(lin(anatomy, ctx, r, i, n), d_head) for r in ("q", "k", "v"))
    a = ops.attention(
        q, k, v, scaling=scaling, allowed=allowed(anatomy, ctx, i, x.shape[1], x.device)
    )
    h = x + lin(anatomy, ctx, "o", i, ops.merge_heads(a))
    act = str(ctx.config.get("activation_function", "gelu_new"))
    up = lin(anatomy, ctx, "mlp_up", i, ln("norm_mlp", h))
    return h + lin(anatomy, ctx, "mlp_down", i, ops.activation(act, up))


# Call census -----------------------------------------------------------------------------


def census(config: Mapping[str, Any], architecture: str) -> dict[str, int]:
    """GPT-2: token and position lookups; per block ln_1, ln_2, c_attn, c_proj, c_fc and the
    MLP's c_proj (Conv1D, counted as linear) and one activation; ln_f; the LM head."""
    L = config_int(config, "n_layer")
    head = head_calls(architecture, {"GPT2LMHeadModel": 1, "GPT2Model": 0}, "gpt2")
    return {"embedding": 2, "norm": 2 * L + 1, "linear": 4 * L + head, "activation": L}


FAMILY = family.register(
    family.Family(
        name="gpt2",
        model_types=MODEL_TYPES,
        anatomy=build,
        norms=family.Norms(
            "pre-LN LayerNorm (gain and bias): ln_1 before attention, ln_2 before the MLP, "
            "ln_f last"
        ),
        heads=family.Absent("one decoder stack: the anatomy's dimensions give its heads"),
        stack_counts=family.per_type(MODEL_TYPES, {_STACK: family.StackCount(None, "n_layer")}),
        symmetry=describe,
        reference=FamilyReference(one_stack, block, token_embeddings),
        census=family.per_type(MODEL_TYPES, census),
        text=family.per_type(MODEL_TYPES, DECODER_TEXT),
        module=family.TransformersModule(),
    )
)
