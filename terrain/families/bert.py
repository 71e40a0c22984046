"""BERT (and BERT-shaped encoders such as all-MiniLM-L6-v2).

Layout, from transformers' BertModel: `embeddings.{word,position,token_type}_embeddings`,
`embeddings.LayerNorm`, per layer `encoder.layer.N.attention.self.{query,key,value}`,
`attention.output.dense` (O), `attention.output.LayerNorm` (post-attention norm),
`intermediate.dense` (MLP up), `output.dense` (MLP down), `output.LayerNorm`.
Task heads (`cls.*`, `pooler`) are claimed as head roles; weights may carry a `bert.` prefix.

Symmetries, from BertLayer. Attention: q, k, v are nn.Linear with bias, scores
q·k/√d_head plus an additive padding mask, softmax, then O (with bias). Nothing acts on q
or k between the projection and the dot product (absolute position embeddings are added
to the input, not to q/k), so the Q/K gauge is the full GL(d_head) per head with the
biases transformed alongside, and the V/O gauge likewise (b_V → B b_V; b_O is untouched).
MLP: intermediate.dense → GELU (`hidden_act`) → output.dense: permutations only.
Residual: BERT is post-LN with LayerNorm, which subtracts the mean: it commutes with
permutations of the hidden coordinates but not with rotations, and the model's output (the
last hidden state) would come out permuted, not unchanged. No residual symmetry is tested.

Reference, from BertEmbeddings and BertLayer (post-LN):
embeddings = LayerNorm(word[ids] + token_type[0] + position[0..T))
a = O · softmax(q·kᵀ/√d_head, padded keys masked) · v (+ biases);  h = LN(x + a)
y = LN(h + W_down act(W_up h + b_up) + b_down)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from terrain import family
from terrain.anatomy import Anatomy, Dimensions, TensorSource, classify, rule, unclaimed
from terrain.anatomy.config_fields import require_int
from terrain.anatomy.shapes import check_layer_count, check_shape
from terrain.reference import ops
from terrain.reference.family import Block, Context, FamilyReference, maybe, read
from terrain.symmetry.attention import QK
from terrain.symmetry.catalogue import standard_layers
from terrain.symmetry.layout import Architecture
from terrain.symmetry.residual import ROTATION
from terrain.symmetry.weights import Weights
from terrain.tracing import NotPredictedError, config_int

MODEL_TYPES = ("bert",)
S = "encoder"
E = "embeddings"
_L = r"encoder\.layer\.(?P<layer>\d+)\."
_WB = r"\.(weight|bias)"

RULES = (
    rule(r"embeddings\.word_embeddings\.weight", E, "embed_tokens"),
    rule(r"embeddings\.position_embeddings\.weight", E, "embed_positions"),
    rule(r"embeddings\.token_type_embeddings\.weight", E, "embed_token_type"),
    rule(r"embeddings\.LayerNorm" + _WB, E, "norm_embed"),
    rule(_L + r"attention\.self\.query" + _WB, S, "q"),
    rule(_L + r"attention\.self\.key" + _WB, S, "k"),
    rule(_L + r"attention\.self\.value" + _WB, S, "v"),
    rule(_L + r"attention\.output\.dense" + _WB, S, "o"),
    rule(_L + r"attention\.output\.LayerNorm" + _WB, S, "norm_attn"),
    rule(_L + r"intermediate\.dense" + _WB, S, "mlp_up"),
    rule(_L + r"output\.dense" + _WB, S, "mlp_down"),
    rule(_L + r"output\.LayerNorm" + _WB, S, "norm_mlp"),
    rule(r"pooler\.dense" + _WB, "head", "pooler"),
    rule(r"cls\.predictions\.transform\.dense" + _WB, "head", "lm_transform"),
    rule(r"cls\.predictions\.transform\.LayerNorm" + _WB, "head", "lm_norm"),
    rule(r"cls\.predictions\.decoder\.weight", "head", "lm_head"),
    rule(r"cls\.predictions\.(decoder\.)?bias", "head", "lm_bias"),
    rule(r"cls\.seq_relationship" + _WB, "head", "nsp"),
)
SKIP = (unclaimed(r"embeddings\.position_ids", "buffer of position indices, not a parameter"),)


def build(source: TensorSource, config: Mapping[str, Any]) -> Anatomy:
    name = source.name
    shapes = source.tensor_shapes()
    roles, left_out = classify(name, "bert", shapes, RULES, SKIP, prefixes=("bert.",))
    d_model = require_int(name, config, "hidden_size")
    n_heads = require_int(name, config, "num_attention_heads")
    dims = Dimensions(
        d_model=d_model,
        n_heads=n_heads,
        d_head=d_model // n_heads,
        d_ff=require_int(name, config, "intermediate_size"),
        vocab_size=require_int(name, config, "vocab_size"),
        layers={S: require_int(name, config, "num_hidden_layers")},
    )
    for role in ("q", "k", "v", "o", "mlp_up", "mlp_down"):
        check_layer_count(name, roles, S, role, dims.layers[S])
    expected = {
        "q": (d_model, d_model),
        "k": (d_model, d_model),
        "v": (d_model, d_model),
        "o": (d_model, d_model),
        "mlp_up": (dims.d_ff, d_model),
        "mlp_down": (d_model, dims.d_ff),
        "embed_tokens": (dims.vocab_size, d_model),
    }
    for r in roles:
        if r.kind == "weight" and r.role in expected:
            check_shape(name, shapes, r, expected[r.role], f"bert {r.role} from config.json")
    return Anatomy("bert", source, dims, tuple(roles), left_out)


# Symmetries ------------------------------------------------------------------------------


def describe(anatomy: Anatomy, config: Mapping[str, Any], weights: Weights) -> Architecture:
    attention, mlp = standard_layers(anatomy, [S], str(config.get("hidden_act", "gelu")))
    not_applicable = {
        ROTATION: "post-LN LayerNorm subtracts the mean: only permutations of the hidden "
        "coordinates commute with it, and they permute the output instead of preserving it"
    }
    position = config.get("position_embedding_type", "absolute")
    if position != "absolute":
        not_applicable[QK] = f"position_embedding_type {position!r} adds position terms to q and k"
    return Architecture("bert", tuple(attention), tuple(mlp), None, not_applicable)


# Reference -------------------------------------------------------------------------------


def _eps(ctx: Context) -> float:
    return float(ctx.config.get("layer_norm_eps", 1e-12))


def embeddings(anatomy: Anatomy, stack: str, ctx: Context) -> torch.Tensor:
    ids = ctx.inputs["input_ids"]
    x = ops.embed(ids, read(anatomy, ctx, E, "embed_tokens", None))
    types = maybe(anatomy, ctx, E, "embed_token_type", None, "weight")
    if types is not None:
        x = x + types[0]
    positions = maybe(anatomy, ctx, E, "embed_positions", None, "weight")
    if positions is not None:
        x = x + positions[: ids.shape[1]]
    gain = read(anatomy, ctx, E, "norm_embed", None)
    return ops.layer_norm(x, gain, maybe(anatomy, ctx, E, "norm_embed", None), _eps(ctx))


def block(anatomy: Anatomy, b: Block, x: torch.Tensor, ctx: Context) -> torch.Tensor:
    i, d_head = b.layer, anatomy.dims.d_head

    def lin(role: str, h: torch.Tensor) -> torch.Tensor:
        return ops.linear(h, read(anatomy, ctx, S, role, i), maybe(anatomy, ctx, S, role, i))

    def norm(role: str, h: torch.Tensor) -> torch.Tensor:
        return ops.layer_norm(
            h, read(anatomy, ctx, S, role, i), maybe(anatomy, ctx, S, role, i), _eps(ctx)
        )

    q, k, v = (ops.split_heads(lin(r, x), d_head) for r in ("q", "k", "v"))
    allowed = ops.padding_mask(ctx.inputs["attention_mask"])
    a = ops.attention(q, k, v, scaling=d_head**-0.5, allowed=allowed)
    h = norm("norm_attn", lin("o", ops.merge_heads(a)) + x)
    act = str(ctx.config.get("hidden_act", "gelu"))
    u = ops.activation(act, lin("mlp_up", h))
    return norm("norm_mlp", lin("mlp_down", u) + h)


# Call census -----------------------------------------------------------------------------


def census(config: Mapping[str, Any], architecture: str) -> dict[str, int]:
    """BertModel: word, position and token-type Embedding; LayerNorm after the embeddings
    and after each sublayer (post-norm); per layer q, k, v, o, up, down Linear and one
    activation; the pooler is one Linear and a Tanh on the first token."""
    L = config_int(config, "num_hidden_layers")
    heads = {"BertModel": (1, 0, 1), "BertForMaskedLM": (2, 1, 1)}  # linear, norm, activation
    if architecture not in heads:
        raise NotPredictedError(f"no census prediction for the BERT head {architecture!r}")
    h_lin, h_norm, h_act = heads[architecture]
    return {
        "embedding": 3,
        "norm": 1 + 2 * L + h_norm,
        "linear": 6 * L + h_lin,
        "activation": L + h_act,
    }


FAMILY = family.register(
    family.Family(
        name="bert",
        model_types=MODEL_TYPES,
        anatomy=build,
        norms=family.Norms(
            "post-LN: LayerNorm (gain and bias) on the embeddings and after each sublayer's "
            "residual sum (norm_attn after attention, norm_mlp after the MLP)"
        ),
        heads=family.Absent("one tower: the anatomy's dimensions give the encoder's heads"),
        stack_counts=family.per_type(
            MODEL_TYPES, {S: family.StackCount(None, "num_hidden_layers")}
        ),
        symmetry=describe,
        reference=FamilyReference(lambda anatomy: [S], block, embeddings),
        census=family.per_type(MODEL_TYPES, census),
        text=family.per_type(MODEL_TYPES, family.TextConvention("the module itself (an encoder)")),
        module=family.TransformersModule(),
    )
)
