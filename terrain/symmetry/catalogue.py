"""The catalogue: per anatomy family, which exact symmetries hold and which do not (and why).

A family declares a function that describes its checkpoint as layouts (`Architecture`;
`Family.symmetry`, terrain/families/); the symmetries and their negative controls are
derived from the layouts by `attention`, `mlp` and `residual`, the same for every family.
The helpers below are what describers are written with.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from terrain.anatomy import Anatomy
from terrain.anatomy.base import TensorRole
from terrain.errors import TerrainError
from terrain.family import find_family, providing, require
from terrain.suggest import known
from terrain.symmetry.attention import QK, VO, qk_gauge, vo_gauge
from terrain.symmetry.groups import RotaryPairs
from terrain.symmetry.layout import (
    Architecture,
    AttentionLayout,
    MlpLayout,
    NotApplicable,
    QKNorm,
    Symmetry,
)
from terrain.symmetry.mlp import PERMUTATION, SCALING, mlp_permutation, mlp_scaling
from terrain.symmetry.residual import ROTATION, residual_rotation
from terrain.symmetry.weights import Projection, Weights

SYMMETRIES = (QK, VO, PERMUTATION, SCALING, ROTATION)

Describer = Callable[[Anatomy, Mapping[str, Any], Weights], Architecture]


class NotCataloguedError(TerrainError):
    """The anatomy family has no catalogue entry (yet)."""


def catalogued_families() -> list[str]:
    """The families that declare a symmetry describer."""
    return providing("symmetry")


def describe(anatomy: Anatomy, config: Mapping[str, Any], weights: Weights) -> Architecture:
    """The checkpoint as layouts, by its family's describer (terrain/families/)."""
    family = find_family(anatomy.family)
    fn = require(
        None if family is None else family.symmetry,
        NotCataloguedError,
        f"no symmetry catalogue entry for family {anatomy.family!r}",
        f" (catalogued: {known(catalogued_families())})",
    )
    return fn(anatomy, config, weights)


def catalogue(
    anatomy: Anatomy, config: Mapping[str, Any], weights: Weights
) -> dict[str, Symmetry | NotApplicable]:
    """Every symmetry of SYMMETRIES for this checkpoint: the group, or why it does not apply."""
    arch = describe(anatomy, config, weights)
    found: dict[str, Symmetry | NotApplicable] = {
        QK: qk_gauge(arch.attention),
        VO: vo_gauge(arch.attention),
        PERMUTATION: mlp_permutation(arch.mlp),
        SCALING: mlp_scaling(arch.mlp),
        ROTATION: residual_rotation(arch.residual, arch.not_applicable.get(ROTATION, "")),
    }
    for name, reason in arch.not_applicable.items():
        found[name] = NotApplicable(name, reason)
    for name, reason in arch.float32_ops.items():
        entry = found.get(name)
        if isinstance(entry, Symmetry):
            found[name] = replace(entry, float32_reason=reason)
    return found


# Helpers for describers --------------------------------------------------------------


def one(anatomy: Anatomy, stack: str, role: str, layer: int | None, kind: str) -> TensorRole | None:
    """The tensor of (stack, role, kind) in `layer` (None: the stack's own), if any."""
    for r in anatomy.layers(stack, role, kind):
        if r.layer == layer:
            return r
    return None


def projection(anatomy: Anatomy, stack: str, role: str, layer: int | None) -> Projection:
    """The map of a role: its weight and, when stored, its bias."""
    weight = one(anatomy, stack, role, layer, "weight")
    if weight is None:
        raise NotCataloguedError(
            f"model {anatomy.model_name!r}: no {stack}.{role} in layer {layer}"
        )
    return Projection.of(weight, one(anatomy, stack, role, layer, "bias"))


def optional_projection(
    anatomy: Anatomy, stack: str, role: str, layer: int | None
) -> Projection | None:
    weight = one(anatomy, stack, role, layer, "weight")
    return (
        None if weight is None else Projection.of(weight, one(anatomy, stack, role, layer, "bias"))
    )


def layer_indices(anatomy: Anatomy, stack: str, role: str = "q") -> list[int]:
    return [r.layer for r in anatomy.layers(stack, role) if r.layer is not None]


def output_head(anatomy: Anatomy, weights: Weights) -> Projection | None:
    """The LM head reading the last norm: stored, or the module's alias of a tied embedding."""
    stored = anatomy.find("lm_head")
    if stored:
        return Projection(stored[0].tensor)
    return Projection("lm_head.weight") if weights.has("lm_head.weight") else None


def attention_layout(
    anatomy: Anatomy,
    stack: str,
    i: int,
    heads: tuple[int, int, int],
    *,
    prefix: str = "",
    rope: RotaryPairs | None = None,
    qk_norm: QKNorm | None = None,
) -> AttentionLayout:
    """The attention of layer i from roles q k v o (prefix "x": cross-attention)."""
    q, k, v, o = (projection(anatomy, stack, prefix + r, i) for r in ("q", "k", "v", "o"))
    kind = "cross" if prefix else "self"
    n_heads, n_kv, d_head = heads
    return AttentionLayout(
        f"{stack}.{i}.{kind}", q, k, v, o, n_heads, n_kv, d_head, rope=rope, qk_norm=qk_norm
    )


def mlp_layout(anatomy: Anatomy, stack: str, i: int, activation: str) -> MlpLayout:
    """The MLP of layer i from roles mlp_up, mlp_down and, when stored, mlp_gate."""
    return MlpLayout(
        f"{stack}.{i}.mlp",
        up=projection(anatomy, stack, "mlp_up", i),
        down=projection(anatomy, stack, "mlp_down", i),
        activation=activation,
        gate=optional_projection(anatomy, stack, "mlp_gate", i),
    )


def standard_layers(
    anatomy: Anatomy,
    stacks: Sequence[str],
    activation: str,
    *,
    rope: RotaryPairs | None = None,
    qk_norm: Callable[[str, int], QKNorm | None] | None = None,
    heads: tuple[int, int, int] | None = None,
) -> tuple[list[AttentionLayout], list[MlpLayout]]:
    """Self-attention (q k v o) and MLP (up, optional gate, down) layouts of every layer of
    `stacks`, in stack then layer order. `heads`: (n_heads, n_kv_heads, d_head), by default
    the anatomy's dimensions."""
    dims = anatomy.dims
    n_heads, n_kv, d_head = heads or (dims.n_heads, dims.n_kv_heads, dims.d_head)
    attention: list[AttentionLayout] = []
    mlp: list[MlpLayout] = []
    for stack in stacks:
        for i in layer_indices(anatomy, stack):
            attention.append(
                attention_layout(
                    anatomy,
                    stack,
                    i,
                    (n_heads, n_kv, d_head),
                    rope=rope,
                    qk_norm=qk_norm(stack, i) if qk_norm is not None else None,
                )
            )
        for i in layer_indices(anatomy, stack, "mlp_down"):
            mlp.append(mlp_layout(anatomy, stack, i, activation))
    return attention, mlp


def tensor_of(anatomy: Anatomy, stack: str, role: str, layer: int | None) -> str:
    """The tensor name of a weight role (e.g. a norm gain); NotCataloguedError when absent."""
    entry = one(anatomy, stack, role, layer, "weight")
    if entry is None:
        raise NotCataloguedError(
            f"model {anatomy.model_name!r}: no {stack}.{role} in layer {layer}"
        )
    return entry.tensor


LAYERNORM_RESIDUAL = (
    "LayerNorm subtracts the mean: a rotation of the stream commutes with it only after "
    "every writer is centred and only if it fixes the all-ones direction; the catalogue "
    "rotates the residual of RMSNorm models only"
)
