"""Copy-on-write weights of a built module, addressed by the anatomy's tensor names.

A symmetry never edits the shared module: it writes new tensors into a `Weights` view,
and `Weights.forward` runs the module with those tensors swapped in for the call only
(`torch.func.functional_call`). Only the tensors a transform writes are copied.

Tied parameters (one tensor under several module names, e.g. T5's `shared.weight`,
`encoder.embed_tokens.weight` and `lm_head.weight`) form an alias group: an alias that is
not written itself takes the value of the group's first write. Writing two aliases with
different values unties them for that call, which some exact symmetries need (folding a
final norm gain into a tied output head).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.func import functional_call

from terrain.anatomy.base import TensorRole
from terrain.tracing import resolve_name, saved_names


@dataclass(frozen=True)
class Projection:
    """One linear map y = W x + b, addressed by tensor names, seen as W[out, in].

    Mirrors how an anatomy role is taken out of its stored tensor: `transposed` when
    stored as [in, out] (GPT-2's Conv1D), then output rows [start, stop) of a fused tensor,
    within every block of `period` rows when given (per-head interleaving).
    """

    weight: str
    bias: str | None = None
    transposed: bool = False
    rows: tuple[int, int] | None = None
    period: int | None = None

    @staticmethod
    def of(weight: TensorRole, bias: TensorRole | None = None) -> Projection:
        """The map an anatomy's weight role (and its bias role) describe."""
        return Projection(
            weight.tensor,
            None if bias is None else bias.tensor,
            weight.transpose,
            weight.rows,
            weight.period,
        )

    def index(self, n_out: int) -> torch.Tensor | None:
        """Output rows of the stored (out-axis) tensor this map owns; None for all of them."""
        if self.rows is None:
            return None
        start, stop = self.rows
        if self.period is None:
            return torch.arange(start, stop)
        blocks = torch.arange(0, n_out, self.period).unsqueeze(1)
        return (blocks + torch.arange(start, stop).unsqueeze(0)).reshape(-1)


class Weights:
    """The module's parameters by name; writes are kept aside until `forward`."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        named = list(module.named_parameters(remove_duplicate=False))
        self._base: dict[str, torch.Tensor] = {n: p.detach() for n, p in named}
        groups: dict[int, list[str]] = {}
        for n, p in named:
            groups.setdefault(id(p), []).append(n)
        self._aliases: dict[str, tuple[str, ...]] = {
            n: tuple(names) for names in groups.values() for n in names
        }
        self._written: dict[str, torch.Tensor] = {}
        self._resolved: dict[str, str] = {}
        self._saved = saved_names(module)

    def fresh(self) -> Weights:
        """A new view of the same module with nothing written (shares the name tables)."""
        other = Weights.__new__(Weights)
        other.module = self.module
        other._base = self._base
        other._aliases = self._aliases
        other._written = {}
        other._resolved = self._resolved
        other._saved = self._saved
        return other

    def in_place(self) -> InPlaceWeights:
        """A view whose writes go into the module's own tensors (no copy): for a module
        that is used once and then dropped, such as a real-size window, where a copy of
        every written tensor would double the memory."""
        other = InPlaceWeights.__new__(InPlaceWeights)
        other.__dict__.update(self.fresh().__dict__)
        return other

    def name(self, tensor: str) -> str:
        """The module's parameter name for a checkpoint/anatomy tensor name."""
        if tensor not in self._resolved:
            self._resolved[tensor] = resolve_name(tensor, self._base, self._saved)
        return self._resolved[tensor]

    def has(self, tensor: str) -> bool:
        try:
            self.name(tensor)
        except KeyError:
            return False
        return True

    def __getitem__(self, tensor: str) -> torch.Tensor:
        name = self.name(tensor)
        if name in self._written:
            return self._written[name]
        for written, value in self._written.items():  # the first write of a group wins
            if written in self._aliases[name]:
                return value
        return self._base[name]

    def __setitem__(self, tensor: str, value: torch.Tensor) -> None:
        self._written[self._writable(tensor, value)] = value

    def _writable(self, tensor: str, value: torch.Tensor) -> str:
        """The parameter name a write of `value` goes to; fails unless shape and dtype match."""
        name = self.name(tensor)
        old = self._base[name]
        if value.shape != old.shape or value.dtype != old.dtype:
            raise ValueError(
                f"tensor {tensor!r}: a transform wrote shape {list(value.shape)} "
                f"{value.dtype}, the module holds {list(old.shape)} {old.dtype}"
            )
        return name

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self._base.values())).dtype

    @property
    def device(self) -> torch.device:
        return next(iter(self._base.values())).device

    def written(self) -> list[str]:
        return sorted(self._written)

    def overrides(self) -> dict[str, torch.Tensor]:
        """Every module name whose value differs from the module's, aliases included."""
        out = dict(self._written)
        for name, value in self._written.items():  # the first write of a group wins
            for alias in self._aliases[name]:
                out.setdefault(alias, value)
        return out

    def forward(self, inputs: Mapping[str, Any]) -> Any:
        """The module's output with the written tensors in place (the module is untouched)."""
        with torch.no_grad():
            return functional_call(
                self.module, self.overrides(), args=(), kwargs=dict(inputs), tie_weights=False
            )

    # Linear maps seen as W[out, in] ---------------------------------------------------

    def read(self, p: Projection) -> tuple[torch.Tensor, torch.Tensor | None]:
        W = self[p.weight]
        W = W.T if p.transposed else W
        b = self[p.bias] if p.bias is not None else None
        idx = p.index(W.shape[0])
        if idx is not None:
            W = W[idx]
            b = b[idx] if b is not None else None
        return W, b

    def write(self, p: Projection, W: torch.Tensor, b: torch.Tensor | None = None) -> None:
        """Store W[out, in] (and b) for this map, inside its fused tensor when it has rows."""
        stored = self[p.weight]
        full = stored.T if p.transposed else stored
        idx = p.index(full.shape[0])
        if idx is None:
            new = W
        else:
            new = full.clone()
            new[idx] = W
        self[p.weight] = (new.T if p.transposed else new).contiguous()
        if b is not None and p.bias is not None:
            if idx is None:
                self[p.bias] = b.contiguous()
            else:
                new_b = self[p.bias].clone()
                new_b[idx] = b
                self[p.bias] = new_b


class InPlaceWeights(Weights):
    """Writes replace the module's values in place: after a write the module itself is
    changed (the transform's copy semantics are lost, by design)."""

    def __setitem__(self, tensor: str, value: torch.Tensor) -> None:
        name = self._writable(tensor, value)
        old = self._base[name]
        with torch.no_grad():
            old.copy_(value)
        self._written[name] = old


def heads(n: int, d_head: int) -> Iterator[slice]:
    """Row (or column) slices of n heads of width d_head."""
    for h in range(n):
        yield slice(h * d_head, (h + 1) * d_head)


def relative_error(new: torch.Tensor, reference: torch.Tensor) -> float:
    """‖new − reference‖ / ‖reference‖ (Frobenius), in float64."""
    a = new.detach().to(torch.float64)
    b = reference.detach().to(torch.float64)
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp_min(1e-300))
