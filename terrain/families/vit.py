"""What the vision-transformer families share (DINOv2, CLIP's towers, Qwen3.5's vision tower):
the patch embedding, LayerNorm and unmasked-or-masked attention of a reference block, a
tower's own config section, and the heads a tower's section states.

Patch embedding: the conv with stride = kernel = p is a linear map on each flattened
p×p×C patch (row-major over the grid): W.reshape(d, C·p·p) · patch + b.
Attention: scores · d_head^-1/2 (no mask unless given: every patch sees every patch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from terrain.anatomy import Anatomy
from terrain.family import HeadCount
from terrain.reference import ops
from terrain.reference.family import Context, maybe, read


def tower_config(config: Mapping[str, Any], stack: str) -> Mapping[str, Any]:
    """A two-tower config's section of `stack` (`vision_config`, `text_config`), or the
    config itself for a single-tower checkpoint."""
    sub = config.get(f"{stack}_config")
    return sub if isinstance(sub, Mapping) else config


def section_heads(config: Mapping[str, Any], stack: str) -> HeadCount | None:
    """The heads the config's `{stack}_config` section states (transformers' two-tower and
    vision-language configs), or None when it has no such section."""
    hf = config.get(f"{stack}_config")
    if isinstance(hf, Mapping):
        heads = hf.get("num_attention_heads") or hf.get("num_heads")
        hidden = hf.get("hidden_size")
        if isinstance(heads, int) and isinstance(hidden, int) and heads > 0:
            d_head = hf.get("head_dim") or hidden // heads
            kv = hf.get("num_key_value_heads") or heads
            return heads, int(kv), int(d_head), f"config.json {stack}_config"
    return None


def patches(pixels: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) → (B, H/p · W/p, C·p·p), patches in row-major grid order."""
    b, c, h, w = pixels.shape
    x = pixels.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


def patch_embed(anatomy: Anatomy, ctx: Context, stack: str) -> torch.Tensor:
    W = read(anatomy, ctx, stack, "patch_embed", None)
    pixels = ctx.inputs["pixel_values"].to(ctx.dtype)
    return ops.linear(
        patches(pixels, W.shape[-1]),
        W.reshape(W.shape[0], -1),
        maybe(anatomy, ctx, stack, "patch_embed", None),
    )


def layer_norm(
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


def attend(
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
