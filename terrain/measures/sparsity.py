"""Projection sparsity: the fraction of weights with |w| below fixed thresholds.

The absolute fraction is largely a weight-scale effect (at T5's init the Q fraction at
0.1 is already 1.0), so each role also gets two scale-free companions: the fraction of
|w| below 0.1·std of its own tensor (≈0.080 for a Gaussian) and the excess kurtosis
(0 for a Gaussian). Scaling a tensor moves neither.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from terrain.measures.chunks import Chunks, whole
from terrain.measures.kernels import as_numpy

THRESHOLDS = (1e-3, 1e-2, 1e-1)
RELATIVE_SCALE = 0.1
ATTENTION_ROLES = ("q", "k", "v", "o")


@dataclass(frozen=True)
class RoleSparsity:
    role: str
    n_tensors: int
    n_values: int
    below: dict[float, float]  # threshold -> fraction of |w| < threshold
    scale_free: float  # fraction of |w| < 0.1 * std(w), pooled over the role's tensors
    excess_kurtosis: float

    def as_dict(self) -> dict[str, object]:
        return {
            "role": self.role,
            "n_tensors": self.n_tensors,
            "n_values": self.n_values,
            "below": {str(t): f for t, f in self.below.items()},
            "scale_free": self.scale_free,
            "excess_kurtosis": self.excess_kurtosis,
        }


# A role's values as a 1-D NumPy array (CPU: NumPy's comparisons and counts are several
# times faster than torch's there) or a torch tensor (accelerators). Both spell the
# operations used here the same way (abs, less, subtract, multiply with out=,
# count_nonzero, sum(dtype=float64)), so the tally takes the module as `xp`.
Values = Any


def _flat(w: torch.Tensor) -> tuple[Values, Any]:
    """The values of `w` and their array module."""
    flat = w.detach().reshape(-1)
    return (flat, torch) if flat.device.type != "cpu" else (as_numpy(flat), np)


class _Scratch:
    """Work arrays reused across a role's tensors: a fresh array per operation pays a page
    fault per 4 KiB on first touch, which costs more than the operation itself."""

    def __init__(self) -> None:
        self._arrays: dict[str, Values] = {}

    def get(self, name: str, like: Values, xp: Any, boolean: bool = False) -> Values:
        n = int(like.shape[0])
        dtype = (np.dtype(bool) if xp is np else torch.bool) if boolean else like.dtype
        have = self._arrays.get(name)
        if (
            have is None
            or type(have) is not type(like)
            or have.dtype != dtype
            or have.device != like.device
            or have.shape[0] < n
        ):
            have = self._arrays[name] = xp.empty(n, dtype=dtype, device=like.device)
        return have[:n]


@dataclass(frozen=True)
class TensorCounts:
    """One tensor's tallies; a role's sparsity is the sum of its tensors' (`merge`)."""

    n: int
    below: dict[float, int]
    scale_free: int  # |w| < RELATIVE_SCALE · std of this tensor
    m2: float  # sum of squares of the values centred on this tensor's mean
    m4: float


def count_tensor(
    chunks: Chunks, thresholds: Sequence[float] = THRESHOLDS, scratch: _Scratch | None = None
) -> TensorCounts:
    """Tallies of one tensor given as row chunks (`chunks()` starts a fresh pass).

    One chunk (the whole tensor) is measured in one pass: counts, then the two-pass mean
    and central moments in float64 accumulators. Several chunks take three passes (the
    mean, then the moments, then the share below 0.1·std), each converting one chunk at a
    time, so a 7B model's largest weights are never held in float32 at once.
    """
    scratch = scratch or _Scratch()
    parts = chunks()
    first = next(parts, None)
    if first is None:
        raise ValueError("a tensor with no values has no sparsity")
    second = next(parts, None)
    if second is None:
        return _count_whole(first, thresholds, scratch)
    size = 0
    total = 0.0
    below = dict.fromkeys(thresholds, 0)
    # chain, not (first, second, *parts): unpacking would convert every chunk at once
    for part in itertools.chain((first, second), parts):
        x, xp = _flat(part)
        a = xp.abs(x, out=scratch.get("abs", x, xp))
        mask = scratch.get("mask", x, xp, boolean=True)
        for t in thresholds:
            below[t] += int(xp.count_nonzero(xp.less(a, t, out=mask)))
        total += float(x.sum(dtype=xp.float64))
        size += int(x.shape[0])
        del part
    del first, second
    mean = total / size
    m2 = m4 = 0.0
    for part in chunks():
        x, xp = _flat(part)
        d2 = xp.subtract(x, mean, out=scratch.get("d", x, xp))
        xp.multiply(d2, d2, out=d2)
        m2 += float(d2.sum(dtype=xp.float64))
        xp.multiply(d2, d2, out=d2)
        m4 += float(d2.sum(dtype=xp.float64))
    std = (m2 / size) ** 0.5
    scale_free = 0
    for part in chunks():
        x, xp = _flat(part)
        a = xp.abs(x, out=scratch.get("abs", x, xp))
        mask = scratch.get("mask", x, xp, boolean=True)
        scale_free += int(xp.count_nonzero(xp.less(a, RELATIVE_SCALE * std, out=mask)))
    return TensorCounts(size, below, scale_free, m2, m4)


def _count_whole(w: torch.Tensor, thresholds: Sequence[float], scratch: _Scratch) -> TensorCounts:
    x, xp = _flat(w)
    a = xp.abs(x, out=scratch.get("abs", x, xp))
    mask = scratch.get("mask", x, xp, boolean=True)
    below = {t: int(xp.count_nonzero(xp.less(a, t, out=mask))) for t in thresholds}
    size = int(x.shape[0])
    # Central moments: a two-pass mean (float64 accumulators), then d² in place.
    d2 = xp.subtract(x, float(x.sum(dtype=xp.float64)) / size, out=scratch.get("d", x, xp))
    xp.multiply(d2, d2, out=d2)
    m2 = float(d2.sum(dtype=xp.float64))
    xp.multiply(d2, d2, out=d2)
    m4 = float(d2.sum(dtype=xp.float64))
    std = (m2 / size) ** 0.5
    scale_free = int(xp.count_nonzero(xp.less(a, RELATIVE_SCALE * std, out=mask)))
    return TensorCounts(size, below, scale_free, m2, m4)


def merge(role: str, counts: Sequence[TensorCounts]) -> RoleSparsity:
    """A role's sparsity pooled over its tensors' tallies (in the order given)."""
    if not counts:
        raise ValueError(f"role {role!r}: no tensors to measure")
    n = sum(c.n for c in counts)
    below: dict[float, int] = {}
    for c in counts:
        for t, k in c.below.items():
            below[t] = below.get(t, 0) + k
    m2 = m4 = 0.0
    for c in counts:
        m2 += c.m2
        m4 += c.m4
    var = m2 / n
    kurt = (m4 / n) / var**2 - 3.0 if var > 0 else float("nan")
    return RoleSparsity(
        role=role,
        n_tensors=len(counts),
        n_values=n,
        below={t: k / n for t, k in below.items()},
        scale_free=sum(c.scale_free for c in counts) / n,
        excess_kurtosis=kurt,
    )


def role_sparsity(
    role: str, tensors: Iterable[torch.Tensor], thresholds: Sequence[float] = THRESHOLDS
) -> RoleSparsity:
    """Pooled sparsity of one role's whole tensors (consumed one at a time)."""
    scratch = _Scratch()
    return merge(role, [count_tensor(whole(w), thresholds, scratch) for w in tensors])
