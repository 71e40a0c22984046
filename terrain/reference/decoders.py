"""Decoder-only references: Llama, Qwen3, OLMo-3 (RMSNorm, RoPE, GQA) and GPT-2 (LayerNorm).

Llama / Qwen3 (pre-norm):   h = x + O·attn(rms(x));  y = h + W_down(silu(W_gate n) ⊙ W_up n),
                            n = rms(h)
OLMo-3 (post-norm):         h = x + rms(O·attn(x));  y = h + rms(MLP(h))
attention: q, k, v (GQA: n_kv_heads key/value heads, each serving a group of query heads);
Qwen3 RMS-normalises each head of q and k (gain of width d_head), OLMo-3 all of q and all of
k at once (gain per channel), both before RoPE; RoPE rotates pairs (i, i + r/2) by
position·θ^(−2i/r); scores · d_head^-1/2, causal (and within the sliding window for
sliding layers), padded keys masked. Embeddings: the token table, row-indexed.
GPT-2: h = x + O·attn(LN₁ x);  y = h + W_down gelu_new(W_up LN₂ h) (+ biases), causal,
scores · d_head^-1/2; embeddings: wte[ids] + wpe[0..T).
"""

from __future__ import annotations

import torch

from terrain.anatomy import Anatomy
from terrain.reference import ops
from terrain.reference.family import (
    Block,
    Context,
    FamilyReference,
    NotReproducedError,
    maybe,
    read,
    register,
)
from terrain.symmetry.llama import rope_parameters

S = "decoder"


def _lin(anatomy: Anatomy, ctx: Context, role: str, i: int, h: torch.Tensor) -> torch.Tensor:
    return ops.linear(h, read(anatomy, ctx, S, role, i), maybe(anatomy, ctx, S, role, i))


def _allowed(anatomy: Anatomy, ctx: Context, i: int, n: int, device: torch.device) -> torch.Tensor:
    window = None
    if anatomy.layer_type(S, i) == "sliding_attention":
        window = int(ctx.config["sliding_window"])
    allowed = ops.causal_mask(n, device, window)
    mask = ctx.inputs.get("attention_mask")
    return allowed if mask is None else allowed & ops.padding_mask(mask)


def token_embeddings(anatomy: Anatomy, stack: str, ctx: Context) -> torch.Tensor:
    table = ctx.read(anatomy, anatomy.token_embedding())
    x = ops.embed(ctx.inputs["input_ids"], table)
    positions = maybe(anatomy, ctx, "embeddings", "embed_positions", None, "weight")
    if positions is not None:  # GPT-2's learned positions
        x = x + positions[: x.shape[1]]
    return x


def _inv_freq(anatomy: Anatomy, ctx: Context, i: int) -> torch.Tensor:
    params = rope_parameters(ctx.config, anatomy.layer_type(S, i))
    rope_type = params.get("rope_type", "default")
    if rope_type != "default":
        raise NotReproducedError(f"RoPE type {rope_type!r} has no reference (only 'default')")
    d_head = anatomy.dims.d_head
    rotary = int(d_head * float(params.get("partial_rotary_factor", 1.0)))
    return ops.rope_inv_freq(rotary, float(params.get("rope_theta", 10000.0)))


def llama_block(anatomy: Anatomy, b: Block, x: torch.Tensor, ctx: Context) -> torch.Tensor:
    i, family = b.layer, anatomy.family
    d_head = anatomy.dims.d_head
    eps = float(ctx.config.get("rms_norm_eps", 1e-6))

    def lin(role: str, h: torch.Tensor) -> torch.Tensor:
        return _lin(anatomy, ctx, role, i, h)

    def rms(role: str, h: torch.Tensor) -> torch.Tensor:
        return ops.rms_norm(h, read(anatomy, ctx, S, role, i), eps)

    def attend(h: torch.Tensor) -> torch.Tensor:
        q, k, v = lin("q", h), lin("k", h), lin("v", h)
        if family == "olmo3":  # one RMS over all heads at once
            q, k = rms("q_norm", q), rms("k_norm", k)
        q, k, v = (ops.split_heads(t, d_head) for t in (q, k, v))
        if family == "qwen3":  # one RMS per head, gain shared by the heads
            q, k = rms("q_norm", q), rms("k_norm", k)
        positions = torch.arange(h.shape[1], device=h.device)
        inv_freq = _inv_freq(anatomy, ctx, i).to(h.device)
        q, k = ops.apply_rope(q, positions, inv_freq), ops.apply_rope(k, positions, inv_freq)
        allowed = _allowed(anatomy, ctx, i, h.shape[1], h.device)
        a = ops.attention(q, k, v, scaling=d_head**-0.5, allowed=allowed)
        return lin("o", ops.merge_heads(a))

    def mlp(h: torch.Tensor) -> torch.Tensor:
        act = str(ctx.config.get("hidden_act", "silu"))
        return lin("mlp_down", ops.activation(act, lin("mlp_gate", h)) * lin("mlp_up", h))

    if family == "olmo3":
        h = x + rms("norm_attn_post", attend(x))
        return h + rms("norm_mlp_post", mlp(h))
    h = x + attend(rms("norm_attn", x))
    return h + mlp(rms("norm_mlp", h))


def gpt2_block(anatomy: Anatomy, b: Block, x: torch.Tensor, ctx: Context) -> torch.Tensor:
    i, d_head = b.layer, anatomy.dims.d_head
    eps = float(ctx.config.get("layer_norm_epsilon", 1e-5))
    if ctx.config.get("scale_attn_by_inverse_layer_idx") or ctx.config.get(
        "reorder_and_upcast_attn"
    ):
        raise NotReproducedError("GPT-2 attention variants (per-layer scaling, upcast) not written")
    scaling = d_head**-0.5 if ctx.config.get("scale_attn_weights", True) else 1.0

    def lin(role: str, h: torch.Tensor) -> torch.Tensor:
        return _lin(anatomy, ctx, role, i, h)

    def ln(role: str, h: torch.Tensor) -> torch.Tensor:
        gain = read(anatomy, ctx, S, role, i)
        return ops.layer_norm(h, gain, maybe(anatomy, ctx, S, role, i), eps)

    n = ln("norm_attn", x)
    q, k, v = (ops.split_heads(lin(r, n), d_head) for r in ("q", "k", "v"))
    a = ops.attention(
        q, k, v, scaling=scaling, allowed=_allowed(anatomy, ctx, i, x.shape[1], x.device)
    )
    h = x + lin("o", ops.merge_heads(a))
    act = str(ctx.config.get("activation_function", "gelu_new"))
    return h + lin("mlp_down", ops.activation(act, lin("mlp_up", ln("norm_mlp", h))))


for _family in ("llama", "qwen3", "olmo3"):
    register(FamilyReference(_family, lambda anatomy: [S], llama_block, token_embeddings))
register(FamilyReference("gpt2", lambda anatomy: [S], gpt2_block, token_embeddings))
