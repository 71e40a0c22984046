"""T5 reference, from transformers' T5Stack and T5Block (pre-norm, RMS without mean).

rms(x) = g ⊙ x / √(mean x² + eps)   (T5LayerNorm: no mean subtraction, no bias)
self-attention: scores q·kᵀ with NO 1/√d scaling, plus the relative position bias
table[bucket(key − query)] (block 0's table, shared by the stack; bidirectional buckets in
the encoder, causal ones in the decoder), padded keys (encoder) or future keys (decoder)
masked;  h = x + O·attn(rms(x))
decoder cross-attention: q from rms(h), k and v from the encoder output, no position bias,
padded encoder keys masked;  h = h + O_x·attn
MLP: h + W_o relu(W_i rms(h)), or gated: h + W_o (act(W_i0 rms(h)) ⊙ W_i1 rms(h))
embeddings: the shared token table, row-indexed (dropout is the identity in eval).
"""

from __future__ import annotations

import torch

from terrain.anatomy import Anatomy
from terrain.reference import ops
from terrain.reference.family import (
    Block,
    Context,
    FamilyReference,
    find,
    read,
    register,
)
from terrain.symmetry.t5 import activation


def _eps(ctx: Context) -> float:
    return float(ctx.config.get("layer_norm_epsilon", 1e-6))


def _stacks(anatomy: Anatomy) -> list[str]:
    return [s for s in ("encoder", "decoder") if anatomy.layers(s, "q")]


def embeddings(anatomy: Anatomy, stack: str, ctx: Context) -> torch.Tensor:
    ids = ctx.inputs["input_ids" if stack == "encoder" else "decoder_input_ids"]
    own = find(anatomy, stack, "embed_tokens", None)
    table = ctx.read(anatomy, own or anatomy.token_embedding())
    return ops.embed(ids, table)


def _position_bias(anatomy: Anatomy, stack: str, layer: int, n: int, ctx: Context) -> torch.Tensor:
    own = find(anatomy, stack, "position_bias", layer)  # UMT5: every block has its table
    entry = own or find(anatomy, stack, "position_bias", 0)
    if entry is None:
        raise ValueError(f"model {anatomy.model_name!r}: no {stack} relative position bias")
    return ops.t5_position_bias(
        ctx.read(anatomy, entry),
        n,
        n,
        bidirectional=stack == "encoder",
        num_buckets=int(ctx.config.get("relative_attention_num_buckets", 32)),
        max_distance=int(ctx.config.get("relative_attention_max_distance", 128)),
    )


def block(anatomy: Anatomy, b: Block, x: torch.Tensor, ctx: Context) -> torch.Tensor:
    s, i, d_head = b.stack, b.layer, anatomy.dims.d_head

    def w(role: str) -> torch.Tensor:
        return read(anatomy, ctx, s, role, i)

    def rms(role: str, h: torch.Tensor) -> torch.Tensor:
        return ops.rms_norm(h, w(role), _eps(ctx))

    def attend(q_in: torch.Tensor, kv_in: torch.Tensor, roles: str, **kw: object) -> torch.Tensor:
        q, k, v = (
            ops.split_heads(ops.linear(src, w(prefix)), d_head)
            for prefix, src in zip(
                (roles + "q", roles + "k", roles + "v"), (q_in, kv_in, kv_in), strict=True
            )
        )
        a = ops.attention(q, k, v, scaling=1.0, **kw)  # type: ignore[arg-type]
        return ops.linear(ops.merge_heads(a), w(roles + "o"))

    n = x.shape[1]
    if s == "encoder":
        allowed = ops.padding_mask(ctx.inputs["attention_mask"])
    else:
        allowed = ops.causal_mask(n, x.device)
    normed = rms("norm_attn", x)
    h = x + attend(normed, normed, "", allowed=allowed, bias=_position_bias(anatomy, s, i, n, ctx))
    if s == "decoder":
        encoded = ctx.output.encoder_last_hidden_state
        enc_mask = ops.padding_mask(ctx.inputs["attention_mask"])
        h = h + attend(rms("norm_cross", h), encoded, "x", allowed=enc_mask)
    normed = rms("norm_mlp", h)
    act = activation(ctx.config)
    if find(anatomy, s, "mlp_gate", i) is not None:
        inner = ops.activation(act, ops.linear(normed, w("mlp_gate"))) * ops.linear(
            normed, w("mlp_up")
        )
    else:
        inner = ops.activation(act, ops.linear(normed, w("mlp_up")))
    return h + ops.linear(inner, w("mlp_down"))


register(FamilyReference("t5", _stacks, block, embeddings))
