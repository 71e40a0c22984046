"""Canonical roles of a checkpoint's tensors, shared by every family adapter.

An adapter maps each tensor name to a `TensorRole` (stack, layer, role, kind)
or lists it as deliberately unclaimed with a reason. Nothing is skipped
silently: a name that is neither is an AnatomyError naming the tensor.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from terrain.errors import AnatomyError

# Canonical role names. Self-attention q/k/v/o, cross-attention xq/xk/xv/xo.
SELF_ATTENTION = ("q", "k", "v", "o")
CROSS_ATTENTION = ("xq", "xk", "xv", "xo")


class TensorSource(Protocol):
    """What an Anatomy needs from a checkpoint: names, shapes and lazy reads."""

    @property
    def name(self) -> str: ...

    def tensor_shapes(self) -> Mapping[str, tuple[int, ...]]: ...

    def tensor(self, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor: ...


@dataclass(frozen=True)
class TensorRole:
    """One tensor's place in the architecture."""

    tensor: str
    stack: str  # "encoder", "decoder", "embeddings", "head"
    role: str  # canonical role, e.g. "q", "mlp_up", "embed_tokens"
    kind: str  # "weight" or "bias"
    layer: int | None = None


@dataclass(frozen=True)
class Dimensions:
    """What the config says the checkpoint must contain."""

    d_model: int
    n_heads: int
    d_head: int
    d_ff: int
    vocab_size: int
    layers: Mapping[str, int]  # stack -> number of layers


@dataclass(frozen=True)
class Rule:
    """A regex over tensor names; named groups `layer` (int) and `role` (str) fill the role."""

    pattern: re.Pattern[str]
    stack: str
    role: str | Callable[[re.Match[str]], str]
    kind: str | None = None  # None: taken from the name's last component


def rule(pattern: str, stack: str, role: str | Callable[[re.Match[str]], str]) -> Rule:
    return Rule(re.compile(pattern), stack, role)


@dataclass(frozen=True)
class Unclaimed:
    """A name pattern deliberately not measured, and why."""

    pattern: re.Pattern[str]
    reason: str


def unclaimed(pattern: str, reason: str) -> Unclaimed:
    return Unclaimed(re.compile(pattern), reason)


@dataclass(frozen=True)
class Anatomy:
    """A checkpoint's tensors sorted into canonical roles, with lazy access to their values."""

    family: str
    source: TensorSource
    dims: Dimensions
    roles: tuple[TensorRole, ...]
    unclaimed: Mapping[str, str]
    _by_role: dict[tuple[str, str, str], list[TensorRole]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for r in self.roles:
            self._by_role.setdefault((r.stack, r.role, r.kind), []).append(r)
        for entries in self._by_role.values():
            entries.sort(key=lambda r: -1 if r.layer is None else r.layer)

    @property
    def model_name(self) -> str:
        return self.source.name

    def stacks(self) -> list[str]:
        return sorted({r.stack for r in self.roles if r.layer is not None})

    def layers(self, stack: str, role: str, kind: str = "weight") -> list[TensorRole]:
        """Per-layer tensors of one role in one stack, in layer order (empty when absent)."""
        return list(self._by_role.get((stack, role, kind), []))

    def find(self, role: str, kind: str = "weight") -> list[TensorRole]:
        """Every tensor with this role, all stacks, stack then layer order."""
        return [
            r for s in sorted({k[0] for k in self._by_role}) for r in self.layers(s, role, kind)
        ]

    def token_embedding(self) -> TensorRole:
        # A shared table lives in stack "embeddings"; per-stack copies (tied) come after it.
        found = self.layers("embeddings", "embed_tokens") or self.find("embed_tokens")
        if not found:
            raise AnatomyError(f"model {self.model_name!r}: no token-embedding tensor found")
        return found[0]

    def read(self, entry: TensorRole, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.source.tensor(entry.tensor, dtype)

    def census(self) -> dict[str, Any]:
        """Counts of every tensor and parameter by role, plus the unclaimed list with reasons."""
        shapes = self.source.tensor_shapes()
        by_role: Counter[str] = Counter()
        params: Counter[str] = Counter()
        for r in self.roles:
            key = f"{r.stack}.{r.role}.{r.kind}"
            by_role[key] += 1
            params[key] += _numel(shapes[r.tensor])
        return {
            "family": self.family,
            "tensors": len(shapes),
            "claimed": len(self.roles),
            "unclaimed": dict(sorted(self.unclaimed.items())),
            "parameters": sum(_numel(s) for s in shapes.values()),
            "layers": dict(self.dims.layers),
            "heads": self.dims.n_heads,
            "d_model": self.dims.d_model,
            "d_head": self.dims.d_head,
            "d_ff": self.dims.d_ff,
            "by_role": {
                k: {"tensors": by_role[k], "parameters": params[k]} for k in sorted(by_role)
            },
        }


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def classify(
    model_name: str,
    family: str,
    names: Iterable[str],
    rules: Sequence[Rule],
    skip: Sequence[Unclaimed],
    prefixes: Sequence[str] = (),
) -> tuple[list[TensorRole], dict[str, str]]:
    """Sort every name into a role or the unclaimed list; raise on any name that fits neither."""
    roles: list[TensorRole] = []
    left_out: dict[str, str] = {}
    strange: list[str] = []
    for name in names:
        bare = _strip_prefix(name, prefixes)
        placed = _match_rule(name, bare, rules)
        if placed is not None:
            roles.append(placed)
            continue
        reason = next((u.reason for u in skip if u.pattern.fullmatch(bare)), None)
        if reason is None:
            strange.append(name)
        else:
            left_out[name] = reason
    if strange:
        shown = ", ".join(repr(s) for s in sorted(strange)[:8])
        more = f" and {len(strange) - 8} more" if len(strange) > 8 else ""
        raise AnatomyError(
            f"model {model_name!r}: the {family} adapter cannot place tensor(s) {shown}{more}; "
            "they fit no known role of this family (wrong --family, or an unsupported variant)"
        )
    return roles, left_out


def _strip_prefix(name: str, prefixes: Sequence[str]) -> str:
    for p in prefixes:
        if name.startswith(p):
            return name[len(p) :]
    return name


def _match_rule(name: str, bare: str, rules: Sequence[Rule]) -> TensorRole | None:
    for r in rules:
        m = r.pattern.fullmatch(bare)
        if m is None:
            continue
        role = r.role(m) if callable(r.role) else r.role
        kind = r.kind or bare.rsplit(".", 1)[-1]
        layer = m.groupdict().get("layer")
        return TensorRole(name, r.stack, role, kind, None if layer is None else int(layer))
    return None


def check_shape(
    model_name: str,
    shapes: Mapping[str, tuple[int, ...]],
    entry: TensorRole,
    expected: tuple[int, ...],
    what: str,
) -> None:
    """Fail with the tensor's name when its shape disagrees with the config."""
    got = tuple(shapes[entry.tensor])
    if got != expected:
        raise AnatomyError(
            f"model {model_name!r}: tensor {entry.tensor!r} has shape {list(got)}, "
            f"expected {list(expected)} ({what})"
        )


def check_layer_count(
    model_name: str, anatomy_roles: Sequence[TensorRole], stack: str, role: str, expected: int
) -> None:
    """Every layer index 0..expected-1 must be present exactly once for a role."""
    found = sorted(
        r.layer
        for r in anatomy_roles
        if r.stack == stack and r.role == role and r.kind == "weight" and r.layer is not None
    )
    if found != list(range(expected)):
        raise AnatomyError(
            f"model {model_name!r}: {stack} role {role!r} found in layers {found}, "
            f"the config says {expected} layers (0..{expected - 1})"
        )
