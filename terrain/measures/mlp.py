"""Dead MLP neurons: hidden units whose weights in and out are near zero (seed notebook §4–6).

Per hidden unit i of an MLP layer: the norm of its input row in W_up (d_ff, d_model),
of its output column in W_down (d_model, d_ff) and, for gated MLPs, of its row in W_gate.
The seed's combined importance is their product (ungated: up·down, §4–5; gated, T5 v1.1:
gate·up·down, §6); a unit is dead below 1% of the layer's mean importance and weak below
10%. A gated unit is also shut when its gate row alone is near zero: the gate-only count.

Null: at random init each norm is a chi variable of d degrees of freedom concentrated at
its mean (relative sd about 1/√(2d)); a product below 1% of its mean has probability far
below 1e-30 at d ≥ 32, so a random-init replica has no dead units.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from terrain.measures.kernels import norms64

DEAD = 0.01
WEAK = 0.10


def row_norms(w: torch.Tensor) -> NDArray[np.float64]:
    """Norm of each row (W_up, W_gate: one row per hidden unit)."""
    out: NDArray[np.float64] = norms64(w, dim=1).cpu().numpy()
    return out


def column_norms(w: torch.Tensor) -> NDArray[np.float64]:
    """Norm of each column (W_down: one column per hidden unit)."""
    out: NDArray[np.float64] = norms64(w, dim=0).cpu().numpy()
    return out


def chunked_row_norms(chunks: Iterable[torch.Tensor]) -> NDArray[np.float64]:
    """Row norms of a matrix given as consecutive row chunks."""
    return np.concatenate([row_norms(c) for c in chunks])


def chunked_column_norms(chunks: Iterable[torch.Tensor]) -> NDArray[np.float64]:
    """Column norms of a matrix given as consecutive row chunks (squares summed in float64)."""
    total: NDArray[np.float64] | None = None
    for c in chunks:
        part = column_norms(c) ** 2
        total = part if total is None else total + part
    if total is None:
        raise ValueError("a matrix with no rows has no column norms")
    out: NDArray[np.float64] = np.sqrt(total)
    return out


def _stats(x: NDArray[np.float64]) -> dict[str, float]:
    return {
        "mean": float(x.mean()),
        "std": float(x.std()),
        "min": float(x.min()),
        "max": float(x.max()),
    }


@dataclass(frozen=True)
class MLPLayer:
    stack: str
    layer: int
    d_ff: int
    gated: bool
    dead: int  # combined importance < 1% of the layer's mean
    weak: int  # < 10%
    gate_dead: int  # gate row norm < 1% of the mean gate norm (0 when ungated)
    gate_weak: int
    importance: NDArray[np.float64]  # combined importance per unit (for plots)
    norms: dict[str, dict[str, float]]  # "up", "down", "gate" -> mean/std/min/max

    @property
    def dead_fraction(self) -> float:
        return self.dead / self.d_ff

    @property
    def weak_fraction(self) -> float:
        return self.weak / self.d_ff

    def as_dict(self) -> dict[str, object]:
        return {
            "stack": self.stack,
            "layer": self.layer,
            "d_ff": self.d_ff,
            "gated": self.gated,
            "dead_1pct": self.dead,
            "weak_10pct": self.weak,
            "dead_fraction": self.dead_fraction,
            "weak_fraction": self.weak_fraction,
            "gate_dead_1pct": self.gate_dead,
            "gate_weak_10pct": self.gate_weak,
            "norms": self.norms,
        }


def dead_neurons(
    up: NDArray[np.float64],
    down: NDArray[np.float64],
    gate: NDArray[np.float64] | None = None,
    *,
    stack: str = "",
    layer: int = 0,
) -> MLPLayer:
    """Count dead and weak units from per-unit norms (rows of up/gate, columns of down)."""
    if up.shape != down.shape or (gate is not None and gate.shape != up.shape):
        shapes = [up.shape, down.shape, None if gate is None else gate.shape]
        raise ValueError(f"{stack} layer {layer}: per-unit norms disagree in size: {shapes}")
    combined = up * down * (gate if gate is not None else 1.0)
    mean = combined.mean()
    norms = {"up": _stats(up), "down": _stats(down)}
    gate_dead = gate_weak = 0
    if gate is not None:
        norms["gate"] = _stats(gate)
        gate_dead = int(np.sum(gate < DEAD * gate.mean()))
        gate_weak = int(np.sum(gate < WEAK * gate.mean()))
    return MLPLayer(
        stack=stack,
        layer=layer,
        d_ff=int(up.size),
        gated=gate is not None,
        dead=int(np.sum(combined < DEAD * mean)),
        weak=int(np.sum(combined < WEAK * mean)),
        gate_dead=gate_dead,
        gate_weak=gate_weak,
        importance=combined,
        norms=norms,
    )
