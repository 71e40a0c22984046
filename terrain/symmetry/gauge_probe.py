"""Checkpoints moved along the family's exact symmetries, to see which measures move too.

A weight measure describes the function only if the family's exact symmetries (the model
computes the same outputs) leave it unchanged. `write_transformed` applies one seeded
element of a catalogued symmetry to a module's weights and saves the result as a checkpoint
folder; measuring every weight property on it and on the untouched folder tells
invariant measures from gauge-dependent ones (tests/unit/test_gauge_contract.py holds
every declaration's gauge label to that).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from terrain.anatomy import Anatomy
from terrain.symmetry.catalogue import catalogue
from terrain.symmetry.layout import Symmetry
from terrain.symmetry.weights import Weights


def generic_point(module: Any, seed: int, scale: float = 0.2, outliers: int = 3) -> None:
    """Move the module off its init, in place, so that measures of what a random init
    lacks have something to show: every 1-D parameter (norm gains, biases; all 1 or 0 at
    init) gets noise, and a seeded half of the matrices get `outliers` entries at seeded
    places of three times their Marchenko–Pastur edge in σ (a trained checkpoint's
    outsized weights; at init there are none, so the correlation traps they make would be
    0 everywhere). Half, not all: a share of matrices with a spike or a trap must be able
    to move both ways."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim == 1:
                noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
                p.add_((scale * noise).to(p.dtype))
            elif p.ndim == 2 and outliers and bool(torch.rand((), generator=gen) < 0.5):
                edge = float(p.double().std()) * (p.shape[0] ** 0.5 + p.shape[1] ** 0.5)
                where = torch.randperm(p.numel(), generator=gen)[:outliers]
                p.view(-1)[where] = 3 * edge


def symmetries(module: Any, anatomy: Anatomy, config: dict[str, Any]) -> dict[str, Symmetry]:
    """The catalogued symmetries that apply to this module (the others are left out)."""
    entries = catalogue(anatomy, config, Weights(module))
    return {name: e for name, e in entries.items() if isinstance(e, Symmetry)}


def composition(found: dict[str, Symmetry]) -> Symmetry:
    """Every symmetry in `found` applied in turn: an exact symmetry too, and the one that
    moves a statistic taken over all maps (a median moves only when most maps move, and
    each single symmetry moves a few roles)."""
    parts = tuple(found.values())

    def transform(weights: Weights, gen: torch.Generator) -> None:
        for part in parts:
            part.transform(weights, gen)

    return Symmetry(
        name="composition",
        derivation="the composition of " + ", ".join(found),
        transform=transform,
        controls=(),
    )


def write_transformed(module: Any, symmetry: Symmetry, seed: int, out: Path) -> str | None:
    """Save a copy of `module` moved by one seeded draw of `symmetry` to `out`; returns why
    not (None when written): a draw that unties tied tensors has no single checkpoint."""
    weights = Weights(module)
    symmetry.transform(weights, torch.Generator().manual_seed(seed))
    written = weights.overrides()
    moved = copy.deepcopy(module)
    params = dict(moved.named_parameters(remove_duplicate=False))
    seen: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        for name, value in written.items():
            target = params.get(name)
            if target is None:
                return f"{name} is not a parameter of the module"
            key = id(target)
            if key in seen and not torch.equal(seen[key], value):
                return f"the draw unties {name} from the tensors it shares"
            seen[key] = value
            target.copy_(value.to(target.dtype))
    moved.save_pretrained(out, safe_serialization=True)
    return None
