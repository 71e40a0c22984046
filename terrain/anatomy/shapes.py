"""Checks of a checkpoint's tensors against its config, and splits of fused tensors, for
the family adapters (terrain/families/): each failure is an AnatomyError naming the tensor,
its shape and what the config expected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from terrain.anatomy.base import TensorRole
from terrain.errors import AnatomyError

__all__ = [
    "ShapeKey",
    "check_layer_count",
    "check_layer_set",
    "check_shape",
    "check_shapes",
    "layer_types_from_config",
    "mlp_and_norm_shapes",
    "split_equal",
    "split_fused",
    "split_rows",
]


def split_rows(
    model_name: str,
    shapes: Mapping[str, tuple[int, ...]],
    entry: TensorRole,
    parts: Sequence[tuple[str, int]],
    *,
    transpose: bool = False,
    period: int | None = None,
    what: str,
) -> list[TensorRole]:
    """One fused tensor -> one TensorRole per (role, rows) part, in order along its out axis.

    The parts' sizes must add up to the stored out axis (per `period` block when given);
    anything else fails naming the tensor, its shape and the expected split.
    """
    fused = replace(entry, transpose=transpose)
    out_axis = fused.shape(shapes[entry.tensor])[0]
    total = sum(size for _, size in parts)
    block = period if period else total
    spelled = " + ".join(f"{role} {size}" for role, size in parts)
    if block != total or out_axis % block != 0 or (period is None and out_axis != total):
        raise AnatomyError(
            f"model {model_name!r}: fused tensor {entry.tensor!r} has shape "
            f"{list(shapes[entry.tensor])}, its output axis of {out_axis} cannot be split into "
            f"{spelled}{f' rows per block of {period}' if period else ''} ({what})"
        )
    roles: list[TensorRole] = []
    start = 0
    for role, size in parts:
        roles.append(replace(fused, role=role, rows=(start, start + size), period=period))
        start += size
    return roles


def split_equal(
    model_name: str,
    shapes: Mapping[str, tuple[int, ...]],
    entry: TensorRole,
    roles: Sequence[str],
    *,
    transpose: bool = False,
    what: str,
) -> list[TensorRole]:
    """A fused tensor of len(roles) equal parts (e.g. q, k, v), split in that order."""
    out_axis = replace(entry, transpose=transpose).shape(shapes[entry.tensor])[0]
    n = len(roles)
    if out_axis % n != 0:
        raise AnatomyError(
            f"model {model_name!r}: fused tensor {entry.tensor!r} has shape "
            f"{list(shapes[entry.tensor])}: its output axis of {out_axis} is not divisible by "
            f"{n}, expected {n} equal parts {', '.join(roles)} ({what})"
        )
    size = out_axis // n
    return split_rows(
        model_name, shapes, entry, [(r, size) for r in roles], transpose=transpose, what=what
    )


def split_fused(
    model_name: str,
    shapes: Mapping[str, tuple[int, ...]],
    entries: Iterable[TensorRole],
    fused: str,
    roles: Sequence[str],
    *,
    what: str,
) -> list[TensorRole]:
    """The entries in order, each of role `fused` split into len(roles) equal parts (as
    split_equal; transposed first where the entry itself is), the others as they are."""
    out: list[TensorRole] = []
    for r in entries:
        if r.role == fused:
            out += split_equal(model_name, shapes, r, roles, transpose=r.transpose, what=what)
        else:
            out.append(r)
    return out


def check_shape(
    model_name: str,
    shapes: Mapping[str, tuple[int, ...]],
    entry: TensorRole,
    expected: tuple[int, ...],
    what: str,
) -> None:
    """Fail naming the tensor when its shape (as the role reads it) disagrees with the config."""
    got = entry.shape(shapes[entry.tensor])
    if got != tuple(expected):
        view = entry.describe_view()
        how = f" ({entry.role}: {view} of stored {list(shapes[entry.tensor])})" if view else ""
        raise AnatomyError(
            f"model {model_name!r}: tensor {entry.tensor!r}{how} has shape {list(got)}, "
            f"expected {list(expected)} ({what})"
        )


ShapeKey = str | tuple[str, str]


def mlp_and_norm_shapes(d: int, d_ff: int) -> dict[ShapeKey, tuple[int, ...]]:
    """A block's MLP (gate when stored, up, down; as nn.Linear reads them: (out, in)), its two
    norm gains and the final norm, at width d and MLP width d_ff."""
    return {
        "mlp_gate": (d_ff, d),
        "mlp_up": (d_ff, d),
        "mlp_down": (d, d_ff),
        "norm_attn": (d,),
        "norm_mlp": (d,),
        "norm_final": (d,),
    }


def check_shapes(
    model_name: str,
    family: str,
    shapes: Mapping[str, tuple[int, ...]],
    roles: Iterable[TensorRole],
    expected: Mapping[ShapeKey, tuple[int, ...]],
) -> None:
    """Check every role with an expectation, keyed (stack, role) or role; biases by out size.

    A weight's expectation also fixes its bias: a bias of the same role must be
    (expected[0],).
    """
    for r in roles:
        want = expected.get((r.stack, r.role), expected.get(r.role))
        if want is None:
            continue
        if r.kind == "weight":
            check_shape(model_name, shapes, r, want, f"{family} {r.stack} {r.role} from config")
        elif r.kind == "bias" and len(want) >= 2:
            check_shape(
                model_name, shapes, r, (want[0],), f"{family} {r.stack} {r.role} bias from config"
            )


def check_layer_count(
    model_name: str,
    anatomy_roles: Sequence[TensorRole],
    stack: str,
    role: str,
    expected: int,
    *,
    kind: str = "weight",
) -> None:
    """Every layer index 0..expected-1 must be present exactly once for a role."""
    found = _layers_of(anatomy_roles, stack, role, kind)
    if found != list(range(expected)):
        raise AnatomyError(
            f"model {model_name!r}: {stack} role {role!r} found in layers {found}, "
            f"the config says {expected} layers (0..{expected - 1})"
        )


def check_layer_set(
    model_name: str,
    anatomy_roles: Sequence[TensorRole],
    stack: str,
    role: str,
    expected: Sequence[int],
    why: str,
    *,
    kind: str = "weight",
) -> None:
    """A role present exactly in the listed layers (hybrid stacks: by layer type)."""
    found = _layers_of(anatomy_roles, stack, role, kind)
    if found != sorted(expected):
        raise AnatomyError(
            f"model {model_name!r}: {stack} role {role!r} found in layers {found}, "
            f"expected layers {sorted(expected)} ({why})"
        )


def _layers_of(roles: Sequence[TensorRole], stack: str, role: str, kind: str) -> list[int]:
    return sorted(
        r.layer
        for r in roles
        if r.stack == stack and r.role == role and r.kind == kind and r.layer is not None
    )


def layer_types_from_config(
    model_name: str, config: Mapping[str, Any], n_layers: int, allowed: Sequence[str]
) -> tuple[str, ...] | None:
    """The config's `layer_types` list, checked for length and values; None when absent."""
    raw = config.get("layer_types")
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != n_layers or not all(t in allowed for t in raw):
        raise AnatomyError(
            f"model {model_name!r}: config.json field 'layer_types' must list {n_layers} "
            f"entries from {list(allowed)}, got {raw!r}"
        )
    return tuple(raw)
