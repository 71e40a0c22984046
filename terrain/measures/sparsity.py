"""Projection sparsity: the fraction of weights with |w| below fixed thresholds.

The absolute fraction is largely a weight-scale effect (at T5's init the Q fraction at
0.1 is already 1.0), so each role also gets two scale-free companions: the fraction of
|w| below 0.1·std of its own tensor (≈0.080 for a Gaussian) and the excess kurtosis
(0 for a Gaussian). Scaling a tensor moves neither.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from terrain.anatomy import Anatomy
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


@dataclass
class _Tally:
    """Running counts so that a role is measured one tensor at a time."""

    n: int = 0
    tensors: int = 0
    below: dict[float, int] | None = None
    scale_free: int = 0
    m2: float = 0.0  # sum of squares of centred values (per tensor)
    m4: float = 0.0
    scratch: _Scratch = field(default_factory=_Scratch)

    def add(self, w: torch.Tensor, thresholds: Sequence[float]) -> None:
        x, xp = _flat(w)
        a = xp.abs(x, out=self.scratch.get("abs", x, xp))
        mask = self.scratch.get("mask", x, xp, boolean=True)
        if self.below is None:
            self.below = {t: 0 for t in thresholds}
        for t in thresholds:
            self.below[t] += int(xp.count_nonzero(xp.less(a, t, out=mask)))
        size = int(x.shape[0])
        # Central moments: a two-pass mean (float64 accumulators), then d² in place.
        d2 = xp.subtract(x, float(x.sum(dtype=xp.float64)) / size, out=self.scratch.get("d", x, xp))
        xp.multiply(d2, d2, out=d2)
        m2 = float(d2.sum(dtype=xp.float64))
        xp.multiply(d2, d2, out=d2)
        m4 = float(d2.sum(dtype=xp.float64))
        std = (m2 / size) ** 0.5
        self.scale_free += int(xp.count_nonzero(xp.less(a, RELATIVE_SCALE * std, out=mask)))
        self.m2 += m2
        self.m4 += m4
        self.n += size
        self.tensors += 1

    def result(self, role: str) -> RoleSparsity:
        below = self.below or {}
        var = self.m2 / self.n if self.n else float("nan")
        kurt = (self.m4 / self.n) / var**2 - 3.0 if self.n and var > 0 else float("nan")
        return RoleSparsity(
            role=role,
            n_tensors=self.tensors,
            n_values=self.n,
            below={t: c / self.n for t, c in below.items()},
            scale_free=self.scale_free / self.n if self.n else float("nan"),
            excess_kurtosis=kurt,
        )


def role_sparsity(
    role: str, tensors: Iterable[torch.Tensor], thresholds: Sequence[float] = THRESHOLDS
) -> RoleSparsity:
    """Pooled sparsity of one role's tensors (consumed one at a time)."""
    tally = _Tally()
    for w in tensors:
        tally.add(w, thresholds)
    if tally.tensors == 0:
        raise ValueError(f"role {role!r}: no tensors to measure")
    return tally.result(role)


def projection_sparsity(
    anatomy: Anatomy,
    roles: Sequence[str] = ATTENTION_ROLES,
    thresholds: Sequence[float] = THRESHOLDS,
) -> dict[str, RoleSparsity]:
    """Sparsity of each attention projection role, pooled over layers and stacks."""
    out: dict[str, RoleSparsity] = {}
    for role in roles:
        entries = anatomy.find(role)
        if entries:
            out[role] = role_sparsity(role, (anatomy.read(e) for e in entries), thresholds)
    return out
