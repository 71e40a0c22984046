"""Measurements of an attached modulator on one model: exactness at α = 0, null-space
preservation, detach, one training step, and the α sweep of per-layer drift."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from terrain.anatomy import Anatomy
from terrain.modulators.attach import Modulator, attach, residual_blocks
from terrain.symmetry.weights import relative_error
from terrain.tracing import capture_blocks, primary_output

# ‖new − old‖ / ‖old‖ in float64: the symmetry properties' measure of an output change.
relative_change = relative_error


@contextmanager
def attached(
    module: nn.Module, anatomy: Anatomy, modulator: Modulator, **kw: Any
) -> Iterator[None]:
    handle = attach(module, anatomy, modulator, **kw)
    try:
        yield
    finally:
        handle.detach()


def output(module: nn.Module, inputs: Mapping[str, Any]) -> torch.Tensor:
    with torch.no_grad():
        return primary_output(module(**inputs))


@dataclass(frozen=True)
class NullSpaceCheck:
    calls: int
    null_changed: int  # null-space entries that differ after modulation (must be 0)
    active_changed: int  # active entries that differ (the control: must be > 0)


class _Watch:
    """Wraps a modulator; compares every block input before and after modulation."""

    def __init__(self, inner: Modulator, null_index: torch.Tensor, active_index: torch.Tensor):
        self.inner, self.null, self.active = inner, null_index, active_index
        self.calls = self.null_changed = self.active_changed = 0

    def modulate(
        self, residual: torch.Tensor, layer: int, token_ids: torch.Tensor | None
    ) -> torch.Tensor:
        out = self.inner.modulate(residual, layer, token_ids)
        before, after = residual.index_select(-1, self.null), out.index_select(-1, self.null)
        self.null_changed += int((before != after).sum())
        moved = residual.index_select(-1, self.active) != out.index_select(-1, self.active)
        self.active_changed += int(moved.sum())
        self.calls += 1
        return out


def null_space_check(
    module: nn.Module, anatomy: Anatomy, modulator: Any, inputs: Mapping[str, Any]
) -> NullSpaceCheck:
    watch = _Watch(modulator, modulator.null_index, modulator.active_index)
    with attached(module, anatomy, watch):
        output(module, inputs)
    return NullSpaceCheck(watch.calls, watch.null_changed, watch.active_changed)


def state_unchanged(module: nn.Module, before: Mapping[str, str]) -> bool:
    """Every tensor of the module's state has the bytes it had at `snapshot`."""
    return snapshot(module) == dict(before)


def snapshot(module: nn.Module) -> dict[str, str]:
    """A digest of every tensor's bytes (exact, without a copy of the module: a copy of a
    real-size block would double the forward's memory)."""
    out = {}
    for k, v in module.state_dict().items():
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{v.dtype}{tuple(v.shape)}".encode())
        h.update(v.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
        out[k] = h.hexdigest()
    return out


@dataclass(frozen=True)
class TrainingStep:
    model_unchanged: bool
    modulator_moved: float  # relative change of the modulator's parameters


def one_training_step(
    module: nn.Module,
    anatomy: Anatomy,
    modulator: nn.Module,
    inputs: Mapping[str, Any],
    lr: float = 0.1,
) -> TrainingStep:
    """One SGD step on the modulator's parameters through the model's output."""
    before_model = snapshot(module)
    before_mod = torch.cat([p.detach().flatten().clone() for p in modulator.parameters()])
    optimiser = torch.optim.SGD(modulator.parameters(), lr=lr)
    # Gradients for the modulator only: the model's own weights get no gradient buffers
    # (and the optimiser no state for them), so the step costs the modulator's size.
    frozen = [p for p in module.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        with attached(module, anatomy, modulator):  # type: ignore[arg-type]
            out = primary_output(module(**inputs)).to(torch.float64)
            # A fixed random readout: a norm-like loss is flat through LayerNorm outputs.
            gen = torch.Generator().manual_seed(0)
            readout = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out.device)
            loss = (out * readout).sum()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    modulator.zero_grad(set_to_none=True)
    after_mod = torch.cat([p.detach().flatten() for p in modulator.parameters()])
    return TrainingStep(
        state_unchanged(module, before_model), relative_change(after_mod, before_mod)
    )


def block_outputs(
    module: nn.Module, anatomy: Anatomy, stack: str, inputs: Mapping[str, Any]
) -> dict[int, torch.Tensor]:
    """Each block's output hidden states in one forward."""
    blocks = residual_blocks(module, anatomy, stack)
    captured, _ = capture_blocks(module, [path for _, path in blocks], inputs)
    return {layer: captured[path].hidden_out for layer, path in blocks}


def alpha_sweep(
    module: nn.Module,
    anatomy: Anatomy,
    modulator: Any,
    stack: str,
    inputs: Mapping[str, Any],
    alphas: Sequence[float],
) -> dict[float, dict[int, float]]:
    """α -> layer -> relative drift of that block's output from the unmodulated model's."""
    plain = block_outputs(module, anatomy, stack, inputs)
    sweep: dict[float, dict[int, float]] = {}
    for alpha in alphas:
        modulator.set_alpha(alpha)
        with attached(module, anatomy, modulator, stack=stack):
            moved = block_outputs(module, anatomy, stack, inputs)
        sweep[alpha] = {layer: relative_change(moved[layer], plain[layer]) for layer in plain}
    return sweep
