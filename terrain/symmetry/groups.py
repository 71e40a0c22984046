"""Seeded random elements of the groups the symmetries are made of.

Every sampler takes a `torch.Generator`, so a draw is reproduced from its seed. Invertible
maps are drawn with singular values log-uniform in [1/spread, spread] (condition number
at most spread²), so an exact symmetry stays exact to ~1e-14 in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from terrain.workpool import single_threaded

SPREAD = 2.0


def _uniform(n: int, gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    return torch.rand(n, generator=gen, dtype=torch.float64).to(dtype)


def orthogonal(n: int, gen: torch.Generator, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Haar-random n×n orthogonal matrix (QR of a Gaussian, signs fixed by R's diagonal)."""
    g = torch.randn(n, n, generator=gen, dtype=torch.float64)
    with single_threaded():  # a head-sized QR: threads cost more than they give
        q, r = torch.linalg.qr(g)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    out: torch.Tensor = q.to(dtype)
    return out


def log_uniform(
    n: int, gen: torch.Generator, dtype: torch.dtype = torch.float64, spread: float = SPREAD
) -> torch.Tensor:
    """n positive factors, log-uniform in [1/spread, spread]."""
    u = _uniform(n, gen, torch.float64) * 2.0 - 1.0
    return torch.exp(u * math.log(spread)).to(dtype)


def invertible(
    n: int, gen: torch.Generator, dtype: torch.dtype = torch.float64, spread: float = SPREAD
) -> torch.Tensor:
    """U diag(s) Vᵀ with Haar U, V and s log-uniform in [1/spread, spread]: a generic GL(n)."""
    u = orthogonal(n, gen, torch.float64)
    v = orthogonal(n, gen, torch.float64)
    s = log_uniform(n, gen, torch.float64, spread)
    return ((u * s.unsqueeze(0)) @ v.T).to(dtype)


def permutation(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=gen)


def signs(n: int, gen: torch.Generator, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return (torch.randint(0, 2, (n,), generator=gen) * 2 - 1).to(dtype)


def rotation2(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)


@dataclass(frozen=True)
class RotaryPairs:
    """How rotary position embedding acts on one head's d_head coordinates.

    `pairs[f] = (i, j)`: coordinates i and j are rotated together by position·θ_f (in the
    rotate-half convention of Hugging Face models, (f, f + r/2) for rotary width r).
    `free`: coordinates RoPE leaves alone (partial rotary).
    """

    d_head: int
    pairs: tuple[tuple[int, int], ...]
    free: tuple[int, ...]

    @staticmethod
    def rotate_half(d_head: int, rotary_dim: int | None = None) -> RotaryPairs:
        r = d_head if rotary_dim is None else rotary_dim
        half = r // 2
        return RotaryPairs(
            d_head, tuple((f, f + half) for f in range(half)), tuple(range(r, d_head))
        )


def block_map(
    rope: RotaryPairs, blocks: list[torch.Tensor], free: torch.Tensor | None
) -> torch.Tensor:
    """The d_head×d_head map acting as blocks[f] on pair f and as `free` on the free coords."""
    A = torch.zeros(rope.d_head, rope.d_head, dtype=torch.float64)
    for (i, j), b in zip(rope.pairs, blocks, strict=True):
        idx = torch.tensor([i, j])
        A[idx.unsqueeze(1), idx.unsqueeze(0)] = b
    if rope.free:
        idx = torch.tensor(rope.free)
        A[idx.unsqueeze(1), idx.unsqueeze(0)] = (
            free if free is not None else torch.eye(len(rope.free), dtype=torch.float64)
        )
    return A


def rotary_commutant(
    rope: RotaryPairs, gen: torch.Generator, spread: float = SPREAD
) -> torch.Tensor:
    """A generic map commuting with every rotary block: s_f·R(φ_f) on each pair f (the
    2×2 matrices commuting with all rotations are the scaled rotations), any invertible
    map on the free coordinates."""
    scales = log_uniform(len(rope.pairs), gen, torch.float64, spread)
    angles = (_uniform(len(rope.pairs), gen, torch.float64) * 2 * math.pi).tolist()
    blocks = [float(s) * rotation2(a) for s, a in zip(scales.tolist(), angles, strict=True)]
    free = invertible(len(rope.free), gen, torch.float64, spread) if rope.free else None
    return block_map(rope, blocks, free)


def pair_rotations(rope: RotaryPairs, gen: torch.Generator) -> torch.Tensor:
    """Orthogonal and commuting with RoPE: a rotation by a random angle on each pair."""
    angles = (_uniform(len(rope.pairs), gen, torch.float64) * 2 * math.pi).tolist()
    free = orthogonal(len(rope.free), gen) if rope.free else None
    return block_map(rope, [rotation2(a) for a in angles], free)
