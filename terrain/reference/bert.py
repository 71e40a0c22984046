"""BERT reference, from transformers' BertEmbeddings and BertLayer (post-LN).

embeddings = LayerNorm(word[ids] + token_type[0] + position[0..T))
a = O · softmax(q·kᵀ/√d_head, padded keys masked) · v (+ biases);  h = LN(x + a)
y = LN(h + W_down act(W_up h + b_up) + b_down)
"""

from __future__ import annotations

import torch

from terrain.anatomy import Anatomy
from terrain.reference import ops
from terrain.reference.family import Block, Context, FamilyReference, maybe, read, register

S = "encoder"
E = "embeddings"


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


register(FamilyReference("bert", lambda anatomy: [S], block, embeddings))
