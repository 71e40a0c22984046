"""Qwen3.5 text decoder reference, from transformers' Qwen3_5DecoderLayer (text inputs only).

rms(x) = x / √(mean x² + eps) · (1 + w)      (Qwen3_5RMSNorm: gains stored as offsets)
every layer:  h = x + mixer(rms(x));  y = h + W_down(silu(W_gate n) ⊙ W_up n), n = rms(h)
full attention: q_proj gives q and a gate per head; q and k RMS-normalised per head (shared
  gain), RoPE on the first r = partial_rotary_factor·d_head coordinates of each head
  (text positions: the multimodal sections coincide), GQA, scores · d_head^-1/2, causal and
  padding masks; out = O (attn ⊙ σ(gate)).
gated delta net (linear attention), on the stream with padded positions zeroed:
  [q | k | v] = W_qkv x, then a depthwise causal conv over time (kernel K) and silu;
  q, k L2-normalised per key head (eps 1e-6) and q / √d_k; key heads repeat for the value
  heads of their group; β = σ(W_b x), decay γ = −exp(A_log)·softplus(W_a x + dt_bias);
  state S (d_k × d_v) per value head, from 0:  S ← e^γ S;  S ← S + k (β (v − Sᵀk))ᵀ;
  o = Sᵀ q;  out = W_o( rms_d_v(o) · w_norm ⊙ silu(W_z x) ).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from terrain.anatomy import Anatomy
from terrain.families.decoder import rope_parameters
from terrain.families.qwen3_5.anatomy import GAIN_OFFSET
from terrain.reference import ops
from terrain.reference.family import Block, Context, NotReproducedError, find, maybe, read

S = "decoder"


def _text(ctx: Context) -> Mapping[str, Any]:
    text = ctx.config.get("text_config")
    return text if isinstance(text, Mapping) else ctx.config


def _rms1p(h: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return ops.rms_norm(h, GAIN_OFFSET + w, eps)


def _full_attention(
    anatomy: Anatomy, ctx: Context, i: int, n: torch.Tensor, eps: float
) -> torch.Tensor:
    cfg = _text(ctx)
    d_head = anatomy.dims.d_head

    def lin(role: str) -> torch.Tensor:
        return ops.linear(n, read(anatomy, ctx, S, role, i), maybe(anatomy, ctx, S, role, i))

    q = _rms1p(ops.split_heads(lin("q"), d_head), read(anatomy, ctx, S, "q_norm", i), eps)
    k = _rms1p(ops.split_heads(lin("k"), d_head), read(anatomy, ctx, S, "k_norm", i), eps)
    v = ops.split_heads(lin("v"), d_head)
    params = rope_parameters(cfg)
    if params.get("rope_type", "default") != "default":
        raise NotReproducedError(f"RoPE type {params.get('rope_type')!r} has no reference")
    rotary = int(d_head * float(params.get("partial_rotary_factor", 1.0)))
    inv_freq = ops.rope_inv_freq(rotary, float(params.get("rope_theta", 10000.0))).to(n.device)
    positions = torch.arange(n.shape[1], device=n.device)
    q, k = ops.apply_rope(q, positions, inv_freq), ops.apply_rope(k, positions, inv_freq)
    allowed = ops.causal_mask(n.shape[1], n.device)
    mask = ctx.inputs.get("attention_mask")
    if mask is not None:
        allowed = allowed & ops.padding_mask(mask)
    a = ops.merge_heads(ops.attention(q, k, v, scaling=d_head**-0.5, allowed=allowed))
    gate = torch.sigmoid(lin("attn_gate"))
    return ops.linear(a * gate, read(anatomy, ctx, S, "o", i), maybe(anatomy, ctx, S, "o", i))


def _gated_delta_net(
    anatomy: Anatomy, ctx: Context, i: int, n: torch.Tensor, eps: float
) -> torch.Tensor:
    cfg = _text(ctx)
    hk, dk = int(cfg["linear_num_key_heads"]), int(cfg["linear_key_head_dim"])
    hv, dv = int(cfg["linear_num_value_heads"]), int(cfg["linear_value_head_dim"])
    mask = ctx.inputs.get("attention_mask")
    if mask is not None:
        n = n * mask[:, :, None].to(n.dtype)
    b, t, _ = n.shape

    def lin(role: str) -> torch.Tensor:
        return ops.linear(n, read(anatomy, ctx, S, role, i), maybe(anatomy, ctx, S, role, i))

    mixed = torch.cat([lin("linear_q"), lin("linear_k"), lin("linear_v")], dim=-1)
    conv = read(anatomy, ctx, S, "linear_conv", i).reshape(mixed.shape[-1], -1)  # (C, K)
    kernel = conv.shape[1]
    padded = torch.cat([mixed.new_zeros(b, kernel - 1, mixed.shape[-1]), mixed], dim=1)
    mixed = torch.stack([conv[:, j] * padded[:, j : j + t] for j in range(kernel)]).sum(0)
    conv_bias = maybe(anatomy, ctx, S, "linear_conv", i)
    if conv_bias is not None:
        mixed = mixed + conv_bias
    mixed = ops.activation("silu", mixed)
    q = mixed[..., : hk * dk].reshape(b, t, hk, dk)
    k = mixed[..., hk * dk : 2 * hk * dk].reshape(b, t, hk, dk)
    v = mixed[..., 2 * hk * dk :].reshape(b, t, hv, dv)
    q = q / torch.sqrt((q * q).sum(-1, keepdim=True) + 1e-6) / dk**0.5
    k = k / torch.sqrt((k * k).sum(-1, keepdim=True) + 1e-6)
    q, k = q.repeat_interleave(hv // hk, dim=2), k.repeat_interleave(hv // hk, dim=2)
    beta = torch.sigmoid(lin("linear_beta"))
    a_log = read(anatomy, ctx, S, "linear_a_log", i)
    dt_bias = read(anatomy, ctx, S, "linear_dt_bias", i, "bias")
    decay = -torch.exp(a_log) * torch.nn.functional.softplus(lin("linear_decay") + dt_bias)
    state = n.new_zeros(b, hv, dk, dv)
    outs = []
    for s in range(t):
        state = state * torch.exp(decay[:, s])[:, :, None, None]
        memory = torch.einsum("bhkv,bhk->bhv", state, k[:, s])
        delta = (v[:, s] - memory) * beta[:, s, :, None]
        state = state + k[:, s, :, :, None] * delta[:, :, None, :]
        outs.append(torch.einsum("bhkv,bhk->bhv", state, q[:, s]))
    o = torch.stack(outs, dim=1)  # (b, t, hv, dv)
    z = lin("linear_gate").reshape(b, t, hv, dv)
    o = ops.rms_norm(o, read(anatomy, ctx, S, "linear_norm", i), eps) * ops.activation("silu", z)
    return ops.linear(o.reshape(b, t, hv * dv), read(anatomy, ctx, S, "linear_o", i))


def block(anatomy: Anatomy, b: Block, x: torch.Tensor, ctx: Context) -> torch.Tensor:
    i = b.layer
    eps = float(_text(ctx).get("rms_norm_eps", 1e-6))
    n = _rms1p(x, read(anatomy, ctx, S, "norm_attn", i), eps)
    if find(anatomy, S, "q", i) is not None:
        h = x + _full_attention(anatomy, ctx, i, n, eps)
    else:
        h = x + _gated_delta_net(anatomy, ctx, i, n, eps)
    n = _rms1p(h, read(anatomy, ctx, S, "norm_mlp", i), eps)
    act = str(_text(ctx).get("hidden_act", "silu"))

    def lin(role: str, h: torch.Tensor) -> torch.Tensor:
        return ops.linear(h, read(anatomy, ctx, S, role, i), maybe(anatomy, ctx, S, role, i))

    return h + lin("mlp_down", ops.activation(act, lin("mlp_gate", n)) * lin("mlp_up", n))
