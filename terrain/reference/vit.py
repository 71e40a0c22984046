"""Vision-transformer references: DINOv2 and CLIP's vision tower (pre-LN, LayerNorm).

Patch embedding: the conv with stride = kernel = p is a linear map on each flattened
p×p×C patch (row-major over the grid): W.reshape(d, C·p·p) · patch + b.
DINOv2: tokens = [cls | patches] + position table (grid as stored: no interpolation);
  h = x + λ₁ ⊙ O·attn(LN₁ x);  y = h + λ₂ ⊙ MLP(LN₂ h), MLP = fc2 gelu(fc1) or SwiGLU
  W_down(silu(W_gate n) ⊙ W_up n).
CLIP vision: tokens = [class | patches] + position table, then pre_layrnorm;
  h = x + O·attn(LN₁ x);  y = h + fc2 quick_gelu(fc1 LN₂ h).
Attention: scores · d_head^-1/2, no mask (every patch sees every patch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from terrain.anatomy import Anatomy
from terrain.reference import ops
from terrain.reference.family import (
    Block,
    Context,
    FamilyReference,
    NotReproducedError,
    find,
    maybe,
    read,
    register,
)


def patches(pixels: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) → (B, H/p · W/p, C·p·p), patches in row-major grid order."""
    b, c, h, w = pixels.shape
    x = pixels.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


def _patch_embed(anatomy: Anatomy, ctx: Context, stack: str) -> torch.Tensor:
    W = read(anatomy, ctx, stack, "patch_embed", None)
    pixels = ctx.inputs["pixel_values"].to(ctx.dtype)
    return ops.linear(
        patches(pixels, W.shape[-1]),
        W.reshape(W.shape[0], -1),
        maybe(anatomy, ctx, stack, "patch_embed", None),
    )


def _ln(
    anatomy: Anatomy,
    ctx: Context,
    stack: str,
    role: str,
    i: int | None,
    h: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    gain = read(anatomy, ctx, stack, role, i)
    return ops.layer_norm(h, gain, maybe(anatomy, ctx, stack, role, i), eps)


def _sub(ctx: Context, stack: str) -> Mapping[str, Any]:
    sub = ctx.config.get(f"{stack}_config")
    return sub if isinstance(sub, Mapping) else ctx.config


def _attend(
    anatomy: Anatomy,
    ctx: Context,
    stack: str,
    i: int,
    n: torch.Tensor,
    d_head: int,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    def lin(role: str, h: torch.Tensor) -> torch.Tensor:
        return ops.linear(
            h, read(anatomy, ctx, stack, role, i), maybe(anatomy, ctx, stack, role, i)
        )

    q, k, v = (ops.split_heads(lin(r, n), d_head) for r in ("q", "k", "v"))
    a = ops.attention(q, k, v, scaling=d_head**-0.5, allowed=allowed)
    return lin("o", ops.merge_heads(a))


# DINOv2 ---------------------------------------------------------------------------------

E = "embeddings"


def dinov2_embeddings(anatomy: Anatomy, stack: str, ctx: Context) -> torch.Tensor:
    x = _patch_embed(anatomy, ctx, E)
    cls = read(anatomy, ctx, E, "cls_token", None).reshape(1, 1, -1).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1)
    table = read(anatomy, ctx, E, "embed_positions", None).reshape(1, -1, x.shape[-1])
    if table.shape[1] != x.shape[1]:
        raise NotReproducedError("DINOv2 position interpolation (image grid ≠ stored grid)")
    return x + table


def dinov2_block(anatomy: Anatomy, b: Block, x: torch.Tensor, ctx: Context) -> torch.Tensor:
    s, i = b.stack, b.layer
    eps = float(ctx.config.get("layer_norm_eps", 1e-6))

    def lin(role: str, h: torch.Tensor) -> torch.Tensor:
        return ops.linear(h, read(anatomy, ctx, s, role, i), maybe(anatomy, ctx, s, role, i))

    lam1 = read(anatomy, ctx, s, "layer_scale_attn", i)
    lam2 = read(anatomy, ctx, s, "layer_scale_mlp", i)
    n = _ln(anatomy, ctx, s, "norm_attn", i, x, eps)
    h = x + lam1 * _attend(anatomy, ctx, s, i, n, anatomy.dims.d_head)
    n = _ln(anatomy, ctx, s, "norm_mlp", i, h, eps)
    if find(anatomy, s, "mlp_gate", i) is not None:
        inner = ops.activation("silu", lin("mlp_gate", n)) * lin("mlp_up", n)
    else:
        inner = ops.activation(str(ctx.config.get("hidden_act", "gelu")), lin("mlp_up", n))
    return h + lam2 * lin("mlp_down", inner)


# CLIP -----------------------------------------------------------------------------------


def clip_embeddings(anatomy: Anatomy, stack: str, ctx: Context) -> torch.Tensor:
    eps = float(_sub(ctx, stack).get("layer_norm_eps", 1e-5))
    if stack == "text":
        ids = ctx.inputs["input_ids"]
        x = ops.embed(ids, read(anatomy, ctx, stack, "embed_tokens", None))
        return x + read(anatomy, ctx, stack, "embed_positions", None)[: ids.shape[1]]
    x = _patch_embed(anatomy, ctx, stack)
    cls = read(anatomy, ctx, stack, "cls_token", None).reshape(1, 1, -1).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1)
    x = x + read(anatomy, ctx, stack, "embed_positions", None)[: x.shape[1]]
    return _ln(anatomy, ctx, stack, "norm_embed", None, x, eps)


def clip_block(anatomy: Anatomy, b: Block, x: torch.Tensor, ctx: Context) -> torch.Tensor:
    s, i = b.stack, b.layer
    cfg = _sub(ctx, s)
    eps = float(cfg.get("layer_norm_eps", 1e-5))
    n_heads = int(cfg.get("num_attention_heads", anatomy.dims.n_heads))
    d_head = x.shape[-1] // n_heads
    allowed = None
    if s == "text":
        allowed = ops.causal_mask(x.shape[1], x.device)
        mask = ctx.inputs.get("attention_mask")
        if mask is not None:
            allowed = allowed & ops.padding_mask(mask)

    def lin(role: str, h: torch.Tensor) -> torch.Tensor:
        return ops.linear(h, read(anatomy, ctx, s, role, i), maybe(anatomy, ctx, s, role, i))

    h = x + _attend(
        anatomy, ctx, s, i, _ln(anatomy, ctx, s, "norm_attn", i, x, eps), d_head, allowed
    )
    act = str(cfg.get("hidden_act", "quick_gelu"))
    return h + lin(
        "mlp_down", ops.activation(act, lin("mlp_up", _ln(anatomy, ctx, s, "norm_mlp", i, h, eps)))
    )


register(FamilyReference("dinov2", lambda anatomy: ["encoder"], dinov2_block, dinov2_embeddings))
register(
    FamilyReference(
        "clip",
        lambda anatomy: [s for s in ("vision", "text") if anatomy.layers(s, "q")],
        clip_block,
        clip_embeddings,
    )
)
