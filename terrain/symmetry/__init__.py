"""Exact weight symmetries of transformer architectures, each with its negative controls.

`catalogue(anatomy, config, weights)` lists, for one checkpoint, every symmetry of
`SYMMETRIES` as a `Symmetry` (seeded group elements acting on a copy of the weights) or
`NotApplicable` (with the reason, derived from the architecture). `measure` applies draws
to the weights and reports the output error of the symmetry and of its controls.

Each family declares how its checkpoint reads as layouts with the family
(terrain/families/, `Family.symmetry`).
"""

from __future__ import annotations

from terrain.symmetry.catalogue import (
    SYMMETRIES,
    NotCataloguedError,
    catalogue,
    catalogued_families,
    describe,
)
from terrain.symmetry.layout import Architecture, Control, NotApplicable, Symmetry
from terrain.symmetry.measure import (
    CONTROL_FLOOR,
    TOLERANCE,
    ControlResult,
    SymmetryResult,
    measure,
)
from terrain.symmetry.weights import Projection, Weights, relative_error

__all__ = [
    "CONTROL_FLOOR",
    "SYMMETRIES",
    "TOLERANCE",
    "Architecture",
    "Control",
    "ControlResult",
    "NotApplicable",
    "NotCataloguedError",
    "Projection",
    "Symmetry",
    "SymmetryResult",
    "Weights",
    "catalogue",
    "catalogued_families",
    "describe",
    "measure",
    "relative_error",
]
