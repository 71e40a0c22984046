"""The vocabulary of the catalogue: where an architecture's maps live, and what a symmetry is.

A family entry describes its blocks as layouts (which tensors are q, k, v, o of a block,
which norm reads the residual stream, ...), and the symmetry modules derive the group
elements and negative controls from those layouts alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch

from terrain.symmetry.groups import RotaryPairs
from terrain.symmetry.weights import Projection, Weights

Transform = Callable[[Weights, torch.Generator], None]
Inertness = Callable[[Weights], str | None]


@dataclass(frozen=True)
class QKNorm:
    """RMS norms on queries and keys before the attention scores.

    scope "head": one gain of width d_head shared by every head (Qwen3), norm over d_head.
    scope "all": one gain per channel over all heads at once (OLMo-2/3), norm over
    n_heads·d_head. `offset`: the effective gain is offset + stored weight.
    """

    q_gain: str
    k_gain: str
    scope: Literal["head", "all"]
    offset: float = 0.0


@dataclass(frozen=True)
class AttentionLayout:
    where: str  # e.g. "encoder.3.self"
    q: Projection
    k: Projection
    v: Projection
    o: Projection
    n_heads: int
    n_kv_heads: int
    d_head: int
    rope: RotaryPairs | None = None
    qk_norm: QKNorm | None = None
    # per-head elementwise output gate: o = O (σ(G x) ⊙ attn), one d_head block per query head
    output_gate: Projection | None = None

    @property
    def group(self) -> int:
        """Query heads per key/value head (1 without GQA)."""
        return self.n_heads // self.n_kv_heads


@dataclass(frozen=True)
class MlpLayout:
    """y = down(act(up x)) or, gated, y = down(act(gate x) ⊙ up x)."""

    where: str
    up: Projection
    down: Projection
    activation: str  # config name: "relu", "gelu", "gelu_new", "silu", "quick_gelu", ...
    gate: Projection | None = None

    @property
    def readers(self) -> tuple[Projection, ...]:
        """The maps reading the MLP's input: the gate (when there is one) and up."""
        return (self.up,) if self.gate is None else (self.gate, self.up)


@dataclass(frozen=True)
class NormSite:
    """An RMS norm reading the residual stream, and the linear maps reading its output."""

    gain: str
    readers: tuple[Projection, ...]
    offset: float = 0.0  # effective gain = offset + stored weight


@dataclass(frozen=True)
class ResidualLayout:
    """Everything that touches the residual stream of a pre-norm RMSNorm model.

    embeddings: tables whose rows are residual vectors. writers: maps whose outputs are
    added to the stream. norms: every RMS norm reading the stream, with its readers; the
    output head and any cross-attention reading a stack's final norm are readers too.
    """

    embeddings: tuple[str, ...]
    writers: tuple[Projection, ...]
    norms: tuple[NormSite, ...]


@dataclass(frozen=True)
class Architecture:
    """A family's layouts for one checkpoint, plus why absent symmetries are absent."""

    family: str
    attention: tuple[AttentionLayout, ...]
    mlp: tuple[MlpLayout, ...]
    residual: ResidualLayout | None
    not_applicable: dict[str, str] = field(default_factory=dict)  # symmetry -> reason
    # symmetry -> why the library computes what it touches in float32 whatever the dtype
    float32_ops: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Control:
    """A map of the same kind that is NOT a symmetry here; it must change the output by O(1).

    `inert(weights)` names why these particular weights make it a symmetry after all
    (e.g. all norm gains equal at initialisation), else None.
    """

    name: str
    why_not: str
    transform: Transform
    inert: Inertness | None = None


@dataclass(frozen=True)
class Symmetry:
    """An exact symmetry: seeded group elements (`transform`) and its negative controls.

    `float32_reason`: set when the library computes an operation the symmetry touches in
    float32 whatever the module's dtype; the symmetry is then exact to float32 precision.
    """

    name: str
    derivation: str
    transform: Transform
    controls: tuple[Control, ...]
    float32_reason: str | None = None


@dataclass(frozen=True)
class NotApplicable:
    name: str
    reason: str
