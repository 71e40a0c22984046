"""Reference forwards by family, and the comparison with the library module.

A family's reference (`Family.reference`, declared in terrain/families/) says where its
blocks are (anatomy stack and layer, and the library's module path of the block),
computes a block's output from its input using only the anatomy's roles and `ops`, and
computes each stack's embeddings from the token ids.
`reproduce` runs the library module once with hooks on every block and compares:
each block from the library's own input, each stack's embeddings, and each stack chained
from the reference embeddings through every reference block.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from terrain.anatomy import Anatomy
from terrain.anatomy.base import TensorRole
from terrain.errors import TerrainError
from terrain.family import find_family, providing, require
from terrain.suggest import known
from terrain.tracing import capture_blocks, resolve_name, saved_names

# A reference block must match the library to float32 precision (the libraries compute
# some norms and rotary tables in float32 even in a float64 module).
TOLERANCE = 1e-5
_CONTAINERS = ("layer", "layers", "block", "h", "resblocks")


class NotReproducedError(TerrainError):
    """The family (or this variant of it) has no reference forward."""


@dataclass(frozen=True)
class Block:
    stack: str
    layer: int
    path: str  # the library module's path of this block


@dataclass(frozen=True)
class Context:
    """What a reference block may use besides its input: the forward's inputs, the
    library's output (for the states a decoder's cross-attention reads) and the dtype."""

    inputs: Mapping[str, Any]
    output: Any
    dtype: torch.dtype
    config: Mapping[str, Any]
    cache: dict[str, torch.Tensor] = field(default_factory=dict, compare=False, repr=False)

    def read(self, anatomy: Anatomy, entry: TensorRole) -> torch.Tensor:
        """A role's values in this dtype and on the inputs' device, read once per context."""
        key = f"{entry.tensor}|{entry.role}|{entry.rows}|{entry.period}|{entry.transpose}"
        if key not in self.cache:
            device = next(
                (v.device for v in self.inputs.values() if isinstance(v, torch.Tensor)), None
            )
            self.cache[key] = anatomy.read(entry, self.dtype).to(device)
        return self.cache[key]


BlockFn = Callable[[Anatomy, Block, torch.Tensor, Context], torch.Tensor]
EmbedFn = Callable[[Anatomy, str, Context], torch.Tensor]


@dataclass(frozen=True)
class FamilyReference:
    """A family's reference forward (`Family.reference`, terrain/families/)."""

    stacks: Callable[[Anatomy], Sequence[str]]
    block: BlockFn
    embeddings: EmbedFn
    # the role whose per-layer tensor locates the library's block (its path is cut there)
    locator: str = "q"


def reference_families() -> list[str]:
    """The families that declare a reference forward."""
    return providing("reference")


def family_reference(anatomy: Anatomy) -> FamilyReference:
    family = find_family(anatomy.family)
    return require(
        None if family is None else family.reference,
        NotReproducedError,
        f"no reference forward for family {anatomy.family!r}",
        f" (written: {known(reference_families())})",
    )


def read(
    anatomy: Anatomy, ctx: Context, stack: str, role: str, layer: int | None, kind: str = "weight"
) -> torch.Tensor:
    """One role's tensor, in the context's dtype, straight from the checkpoint."""
    entry = find(anatomy, stack, role, layer, kind)
    if entry is None:
        raise NotReproducedError(
            f"model {anatomy.model_name!r}: no {stack}.{role}.{kind} ({layer})"
        )
    return ctx.read(anatomy, entry)


def maybe(
    anatomy: Anatomy, ctx: Context, stack: str, role: str, layer: int | None, kind: str = "bias"
) -> torch.Tensor | None:
    entry = find(anatomy, stack, role, layer, kind)
    return None if entry is None else ctx.read(anatomy, entry)


def find(
    anatomy: Anatomy, stack: str, role: str, layer: int | None, kind: str = "weight"
) -> TensorRole | None:
    for r in anatomy.layers(stack, role, kind):
        if r.layer == layer:
            return r
    return None


def block_path(
    tensor: str, layer: int, names: Sequence[str], saved: Mapping[str, str] | None = None
) -> str:
    """The module path of the block holding `tensor`: its resolved name cut after the
    layer index that follows a layer container (`layer.3`, `block.3`, `h.3`, ...)."""
    parts = resolve_name(tensor, names, saved).split(".")
    for i in range(1, len(parts)):
        if parts[i] == str(layer) and parts[i - 1] in _CONTAINERS:
            return ".".join(parts[: i + 1])
    raise NotReproducedError(f"cannot locate the block of tensor {tensor!r} (layer {layer})")


def blocks(
    entry: FamilyReference,
    anatomy: Anatomy,
    names: Sequence[str],
    saved: Mapping[str, str] | None = None,
) -> list[Block]:
    out = []
    for stack in entry.stacks(anatomy):
        for r in anatomy.layers(stack, entry.locator):
            if r.layer is not None:
                out.append(Block(stack, r.layer, block_path(r.tensor, r.layer, names, saved)))
    return out


@dataclass(frozen=True)
class Comparison:
    what: str  # "encoder.3", "encoder embeddings", "encoder chained"
    error: float  # ‖reference − library‖ / ‖library‖

    def as_dict(self) -> dict[str, Any]:
        return {"what": self.what, "error": self.error}


@dataclass(frozen=True)
class Reproduction:
    comparisons: tuple[Comparison, ...]

    @property
    def max_error(self) -> float:
        return max(c.error for c in self.comparisons)

    @property
    def worst(self) -> Comparison:
        return max(self.comparisons, key=lambda c: c.error)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a64, b64 = a.to(torch.float64), b.to(torch.float64)
    return float(torch.linalg.vector_norm(a64 - b64) / torch.linalg.vector_norm(b64))


def reproduce(
    module: torch.nn.Module,
    anatomy: Anatomy,
    config: Mapping[str, Any],
    inputs: Mapping[str, Any],
) -> Reproduction:
    """Compare every reference block, each stack's embeddings and each chained stack."""
    entry = family_reference(anatomy)
    names = [n for n, _ in module.named_parameters(remove_duplicate=False)]
    found = blocks(entry, anatomy, names, saved_names(module))
    if not found:
        raise NotReproducedError(f"model {anatomy.model_name!r}: no blocks found")
    captured, output = capture_blocks(module, [b.path for b in found], inputs)
    dtype = next(module.parameters()).dtype
    ctx = Context(inputs, output, dtype, config)
    comparisons = []
    for stack in entry.stacks(anatomy):
        chain = [b for b in found if b.stack == stack]
        if not chain:
            continue
        first, last = captured[chain[0].path], captured[chain[-1].path]
        h = entry.embeddings(anatomy, stack, ctx)
        comparisons.append(Comparison(f"{stack} embeddings", _rel(h, first.hidden_in)))
        for b in chain:
            got = captured[b.path]
            ref = entry.block(anatomy, b, got.hidden_in, ctx)
            comparisons.append(Comparison(f"{stack}.{b.layer}", _rel(ref, got.hidden_out)))
            h = entry.block(anatomy, b, h, ctx)
        comparisons.append(Comparison(f"{stack} chained", _rel(h, last.hidden_out)))
    return Reproduction(tuple(comparisons))
