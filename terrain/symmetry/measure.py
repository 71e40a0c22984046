"""Measuring a symmetry: apply seeded group elements to a copy of the weights, compare outputs.

Each draw starts from the untouched module (a fresh `Weights`), so draws are independent
and reproducible from their seeds. The error of a draw is ‖y' − y‖/‖y‖ over the module's
primary output (logits, or the last hidden state of an encoder) on fixed inputs.

A negative control must change the output by O(1): at least CONTROL_FLOOR. How much any
map of these tensors can change the output is bounded by how much the output depends on
them at all, the `influence`: the change when every weight a draw of the symmetry changes
is set to zero. At a trained or generic point it is O(1); at a tiny random initialisation (weights
~0.02, attention almost uniform, residual dominated by the embeddings) it can be 1e-3.
The floor is therefore CONTROL_FLOOR × min(1, influence): a control must do at least 1% of
what deleting the weights does, and never less than it would need on a healthy model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from terrain.symmetry.layout import Control, Symmetry, Transform
from terrain.symmetry.weights import Weights, relative_error
from terrain.tracing import primary_output

# An exact symmetry in float64 (Science rules), and the least change a non-symmetry must make.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}
CONTROL_FLOOR = 1e-2


@dataclass(frozen=True)
class ControlResult:
    name: str
    why_not: str
    errors: tuple[float, ...]
    inert: str | None  # why these weights make the control a symmetry too (not measured)

    @property
    def min_error(self) -> float:
        return min(self.errors) if self.errors else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "why_not": self.why_not,
            "errors": list(self.errors),
            "inert": self.inert,
        }


@dataclass(frozen=True)
class SymmetryResult:
    name: str
    derivation: str
    tolerance: float
    seeds: tuple[int, ...]
    errors: tuple[float, ...]
    controls: tuple[ControlResult, ...]
    written: tuple[str, ...]  # tensors a draw changes
    influence: float  # output change when the written tensors are zeroed

    @property
    def max_error(self) -> float:
        return max(self.errors)

    @property
    def control_floor(self) -> float:
        """The least change each measured control must make (see the module docstring)."""
        return CONTROL_FLOOR * min(1.0, self.influence)

    @property
    def weak_controls(self) -> list[ControlResult]:
        """Measured controls that changed the output by less than the floor."""
        return [c for c in self.measured_controls if not c.min_error >= self.control_floor]

    @property
    def measured_controls(self) -> list[ControlResult]:
        return [c for c in self.controls if c.inert is None]

    @property
    def min_control_error(self) -> float:
        """The smallest change any measured control made (NaN when none was measured)."""
        measured = [c.min_error for c in self.measured_controls]
        return min(measured) if measured else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "symmetry": self.name,
            "derivation": self.derivation,
            "tolerance": self.tolerance,
            "seeds": list(self.seeds),
            "errors": list(self.errors),
            "controls": [c.as_dict() for c in self.controls],
            "tensors_changed_per_draw": len(self.written),
            "influence": self.influence,
            "control_floor": self.control_floor,
        }


def _draw(weights: Weights, transform: Transform, seed: int) -> Weights:
    w = weights.fresh()
    transform(w, torch.Generator().manual_seed(seed))
    return w


def apply(
    weights: Weights, transform: Transform, seed: int, inputs: Mapping[str, Any]
) -> torch.Tensor:
    """The primary output after one seeded draw of `transform`."""
    return primary_output(_draw(weights, transform, seed).forward(inputs))


def measure(
    weights: Weights,
    symmetry: Symmetry,
    inputs: Mapping[str, Any],
    seeds: Sequence[int],
    reference: torch.Tensor | None = None,
    control_seeds: Sequence[int] | None = None,
) -> SymmetryResult:
    """Relative output error of each seeded draw of the symmetry and of each control
    (controls: `control_seeds`, by default the same seeds)."""
    if reference is None:
        reference = primary_output(weights.fresh().forward(inputs))
    errors = []
    last: Weights | None = None
    for seed in seeds:
        last = None  # the previous draw is freed before the next one is made
        last = _draw(weights, symmetry.transform, seed)
        errors.append(relative_error(primary_output(last.forward(inputs)), reference))
    assert last is not None, "a symmetry is measured on at least one seed"
    written = last.written()
    influence = _influence(weights, last, written, inputs, reference)
    del last  # the controls' draws are made without it
    chosen = seeds if control_seeds is None else control_seeds
    controls = tuple(_control(weights, c, inputs, chosen, reference) for c in symmetry.controls)
    return SymmetryResult(
        symmetry.name,
        symmetry.derivation,
        tolerance(symmetry, weights.dtype),
        tuple(seeds),
        tuple(errors),
        controls,
        tuple(written),
        influence,
    )


def _influence(
    weights: Weights,
    draw: Weights,
    written: Sequence[str],
    inputs: Mapping[str, Any],
    reference: torch.Tensor,
) -> float:
    """The output's change when every entry a draw changes is set to zero (a fused tensor
    keeps its other entries). A tensor the draw changes everywhere is replaced by a zero
    of no storage (an expanded scalar), so the check costs no copy of a real-size block."""
    zeroed = weights.fresh()
    for name in written:
        old = zeroed[name]
        changed = draw[name] != old
        if bool(changed.all()):
            zeroed[name] = torch.zeros((), dtype=old.dtype, device=old.device).expand(old.shape)
        else:
            zeroed[name] = torch.where(changed, torch.zeros((), dtype=old.dtype), old)
        del changed
    return relative_error(primary_output(zeroed.forward(inputs)), reference)


def tolerance(symmetry: Symmetry, dtype: torch.dtype) -> float:
    """1e-10 in float64, 1e-5 in float32 or where the library computes in float32."""
    if symmetry.float32_reason is not None:
        return TOLERANCE[torch.float32]
    return TOLERANCE.get(dtype, TOLERANCE[torch.float32])


def _control(
    weights: Weights,
    control: Control,
    inputs: Mapping[str, Any],
    seeds: Sequence[int],
    reference: torch.Tensor,
) -> ControlResult:
    inert = control.inert(weights) if control.inert is not None else None
    if inert is not None:
        return ControlResult(control.name, control.why_not, (), inert)
    errors = tuple(
        relative_error(apply(weights, control.transform, seed, inputs), reference) for seed in seeds
    )
    return ControlResult(control.name, control.why_not, errors, None)
