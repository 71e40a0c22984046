"""Which tensors of a model and its base are compared: the same canonical role.

Tensors are paired by their anatomy role (stack, layer, role, kind), not by their names,
so that a checkpoint saved with another prefix (`bert.encoder…` beside `encoder…`) or a
fused tensor split into q, k and v pairs up all the same. A role present in one
checkpoint only, or stored with another shape in the two (a vocabulary grown by a
fine-tune), is listed, never measured. Tensors the anatomy leaves unclaimed (buffers such
as position ids) are no weights and are not compared.
"""

from __future__ import annotations

from dataclasses import dataclass

from terrain.anatomy import Anatomy, TensorRole
from terrain.battery.stream import NOT_MAPS
from terrain.errors import DeltaError

# (stack, layer (-1: none), role, kind, tensor name where a role repeats in one anatomy)
Key = tuple[str, int, str, str, str]


@dataclass(frozen=True)
class Pair:
    """One role of the model and the same role of the base, of one shape."""

    entry: TensorRole  # the model's
    base: TensorRole  # the base's
    shape: tuple[int, ...]  # the role's shape (out, in for a weight)

    @property
    def is_map(self) -> bool:
        """A per-layer 2-D weight: its ΔW gets a spectrum (the battery's selection)."""
        e = self.entry
        return (
            e.kind == "weight" and e.layer is not None and len(self.shape) == 2
        ) and e.role not in NOT_MAPS


def role_label(entry: TensorRole) -> str:
    """A role in words, e.g. "encoder layer 1 q", "encoder layer 1 q bias", "embeddings
    embed_tokens"."""
    where = entry.stack if entry.layer is None else f"{entry.stack} layer {entry.layer}"
    kind = "" if entry.kind == "weight" else f" {entry.kind}"
    return f"{where} {entry.role}{kind}"


@dataclass(frozen=True)
class Pairing:
    pairs: tuple[Pair, ...]
    only_model: tuple[str, ...]  # the model's tensors whose role the base lacks
    only_base: tuple[str, ...]  # the base's tensors whose role the model lacks
    # (role, model tensor, its shape, base tensor, its shape)
    shape_differs: tuple[tuple[str, str, tuple[int, ...], str, tuple[int, ...]], ...]

    def listing(self) -> dict[str, list[object]]:
        """What was not compared, for a finding's details."""
        return {
            "only_in_model": list(self.only_model),
            "only_in_base": list(self.only_base),
            "shape_differs": [
                {
                    "role": r,
                    "tensor": t,
                    "shape": list(s),
                    "base_tensor": bt,
                    "base_shape": list(bs),
                }
                for r, t, s, bt, bs in self.shape_differs
            ],
        }


def _keyed(anatomy: Anatomy) -> dict[Key, TensorRole]:
    seen: dict[tuple[str, int, str, str], int] = {}
    for r in anatomy.roles:
        k = (r.stack, -1 if r.layer is None else r.layer, r.role, r.kind)
        seen[k] = seen.get(k, 0) + 1
    out: dict[Key, TensorRole] = {}
    for r in anatomy.roles:
        k = (r.stack, -1 if r.layer is None else r.layer, r.role, r.kind)
        out[(*k, r.tensor if seen[k] > 1 else "")] = r
    return out


def pair_roles(model: Anatomy, base: Anatomy) -> Pairing:
    """Every role of the model matched with the base's, in (stack, layer, role) order."""
    mine, theirs = _keyed(model), _keyed(base)
    model_shapes, base_shapes = model.source.tensor_shapes(), base.source.tensor_shapes()
    pairs: list[Pair] = []
    differs = []
    for key in sorted(set(mine) & set(theirs)):
        entry, other = mine[key], theirs[key]
        shape = entry.shape(model_shapes[entry.tensor])
        base_shape = other.shape(base_shapes[other.tensor])
        if shape == base_shape:
            pairs.append(Pair(entry, other, shape))
        else:
            differs.append((role_label(entry), entry.tensor, shape, other.tensor, base_shape))
    return Pairing(
        pairs=tuple(pairs),
        only_model=tuple(sorted({mine[k].tensor for k in set(mine) - set(theirs)})),
        only_base=tuple(sorted({theirs[k].tensor for k in set(theirs) - set(mine)})),
        shape_differs=tuple(differs),
    )


def comparable(model: Anatomy, base: Anatomy) -> Pairing:
    """The pairing of two checkpoints of one architecture; DeltaError naming both when they
    are of different families or share no tensor of one shape."""
    if model.family != base.family:
        raise DeltaError(
            f"base model {base.model_name!r} is a {base.family} checkpoint and model "
            f"{model.model_name!r} a {model.family} one: deltas compare two checkpoints of "
            "one architecture"
        )
    pairing = pair_roles(model, base)
    if not pairing.pairs:
        raise DeltaError(
            f"base model {base.model_name!r} shares no tensor of the same shape with model "
            f"{model.model_name!r} ({len(pairing.shape_differs)} roles in common, all of "
            "another shape): deltas compare two checkpoints of one architecture"
        )
    return pairing
