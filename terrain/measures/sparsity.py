"""Projection sparsity: the fraction of weights with |w| below fixed thresholds.

The absolute fraction is largely a weight-scale effect (at T5's init the Q fraction at
0.1 is already 1.0), so each role also gets two scale-free companions: the fraction of
|w| below 0.1·std of its own tensor (≈0.080 for a Gaussian) and the excess kurtosis
(0 for a Gaussian). Scaling a tensor moves neither.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from terrain.anatomy import Anatomy

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


_CHUNK = 1 << 22  # values per float64 chunk: 32 MiB, however large the tensor


def _central_moments(x: torch.Tensor) -> tuple[float, float]:
    """Σ(x − mean)² and Σ(x − mean)⁴ in float64, chunk by chunk (no full float64 copy)."""
    chunks = [x[i : i + _CHUNK] for i in range(0, x.numel(), _CHUNK)]
    mean = sum(float(c.to(torch.float64).sum()) for c in chunks) / x.numel()
    m2 = m4 = 0.0
    for chunk in chunks:
        d2 = (chunk.to(torch.float64) - mean).pow_(2)
        m2 += float(d2.sum())
        m4 += float(d2.pow_(2).sum())
    return m2, m4


@dataclass
class _Tally:
    """Running counts so that a role is measured one tensor at a time."""

    n: int = 0
    tensors: int = 0
    below: dict[float, int] | None = None
    scale_free: int = 0
    m2: float = 0.0  # sum of squares of centred values (per tensor)
    m4: float = 0.0

    def add(self, w: torch.Tensor, thresholds: Sequence[float]) -> None:
        a = w.detach().reshape(-1).abs()
        if self.below is None:
            self.below = {t: 0 for t in thresholds}
        for t in thresholds:
            self.below[t] += int((a < t).sum())
        m2, m4 = _central_moments(w.detach().reshape(-1))
        std = (m2 / a.numel()) ** 0.5
        self.scale_free += int((a < RELATIVE_SCALE * std).sum())
        self.m2 += m2
        self.m4 += m4
        self.n += a.numel()
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
