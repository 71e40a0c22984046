"""The operations of a transformer block, written from their formulas (no torch.nn modules).

Shapes: x is (batch, tokens, width); heads are (batch, heads, tokens, d_head). Masks are
boolean (batch or 1, 1, queries, keys), True where a key may be attended to.
"""

from __future__ import annotations

import math

import torch


def linear(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """x · Wᵀ + b, with W stored (out, in) like nn.Linear."""
    y = x @ W.T
    return y if b is None else y + b


def embed(ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Embedding lookup: row indexing, not a matrix product."""
    return table[ids]


def layer_norm(
    x: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor | None, eps: float
) -> torch.Tensor:
    """(x − mean) / √(var + eps) · g + b, the variance biased (divided by n)."""
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    y = (x - mu) / torch.sqrt(var + eps) * gain
    return y if bias is None else y + bias


def rms_norm(x: torch.Tensor, gain: torch.Tensor, eps: float) -> torch.Tensor:
    """x / √(mean x² + eps) · g: no mean subtraction, no bias (T5, Llama, Qwen, OLMo)."""
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * gain


def activation(name: str, x: torch.Tensor) -> torch.Tensor:
    """The activations of the catalogued families, by their config names."""
    if name == "relu":
        return torch.clamp(x, min=0)
    if name == "gelu":
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    if name in ("silu", "swish"):
        return x / (1.0 + torch.exp(-x))
    if name == "quick_gelu":
        return x / (1.0 + torch.exp(-1.702 * x))
    raise ValueError(f"activation {name!r} has no reference formula")


def split_heads(x: torch.Tensor, d_head: int) -> torch.Tensor:
    b, t, width = x.shape
    return x.reshape(b, t, width // d_head, d_head).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scaling: float,
    allowed: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(q·kᵀ·scaling + bias, masked) · v; k and v heads repeat for GQA groups."""
    group = q.shape[1] // k.shape[1]
    if group > 1:
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
    scores = (q @ k.transpose(-1, -2)) * scaling
    if bias is not None:
        scores = scores + bias
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(batch, keys) 1/0 → (batch, 1, 1, keys) boolean."""
    return attention_mask.bool()[:, None, None, :]


def causal_mask(n: int, device: torch.device, window: int | None = None) -> torch.Tensor:
    """(1, 1, n, n): key j ≤ query i (and i − j < window for sliding attention)."""
    i = torch.arange(n, device=device).unsqueeze(1)
    j = torch.arange(n, device=device).unsqueeze(0)
    allowed = j <= i
    if window is not None:
        allowed = allowed & (i - j < window)
    return allowed[None, None]


def rope_inv_freq(rotary_dim: int, theta: float) -> torch.Tensor:
    """θ^(−2i/r) for i < r/2, the default RoPE frequencies."""
    return 1.0 / theta ** (torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim)


def apply_rope(x: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Rotate coordinate pairs (i, i + r/2) of each head by position·θ_i; the rest pass.

    x: (batch, heads, tokens, d_head); positions: (tokens,).
    """
    r = 2 * inv_freq.shape[0]
    angle = positions.to(torch.float64)[:, None] * inv_freq[None, :]  # (tokens, r/2)
    cos = torch.cos(angle).to(x.dtype)
    sin = torch.sin(angle).to(x.dtype)
    half = r // 2
    x1, x2, rest = x[..., :half], x[..., half:r], x[..., r:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest), dim=-1)


def t5_bucket(relative: int, bidirectional: bool, num_buckets: int, max_distance: int) -> int:
    """T5's bucket of a relative position (key − query), as in Mesh TensorFlow."""
    bucket = 0
    n = num_buckets
    if bidirectional:
        n //= 2
        if relative > 0:
            bucket += n
        relative = abs(relative)
    else:
        relative = max(-relative, 0)
    max_exact = n // 2
    if relative < max_exact:
        return bucket + relative
    # Logarithmic bins up to max_distance, computed in float32 and truncated, as the model does.
    ratio = torch.log(torch.tensor(relative / max_exact, dtype=torch.float32))
    large = max_exact + int(ratio / math.log(max_distance / max_exact) * (n - max_exact))
    return bucket + min(large, n - 1)


def t5_position_bias(
    table: torch.Tensor,
    n_queries: int,
    n_keys: int,
    *,
    bidirectional: bool,
    num_buckets: int,
    max_distance: int,
) -> torch.Tensor:
    """(1, heads, queries, keys) bias: table[bucket(key − query)], table (buckets, heads)."""
    buckets = torch.tensor(
        [
            [t5_bucket(j - i, bidirectional, num_buckets, max_distance) for j in range(n_keys)]
            for i in range(n_queries)
        ]
    )
    return table[buckets].permute(2, 0, 1).unsqueeze(0)
