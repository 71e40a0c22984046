"""Reference forwards written only from the anatomy's roles, compared with the library.

Each family declares its reference with the family (terrain/families/, `Family.reference`).
"""

from __future__ import annotations

from terrain.reference.family import (
    TOLERANCE,
    Comparison,
    NotReproducedError,
    Reproduction,
    reference_families,
    reproduce,
)

__all__ = [
    "TOLERANCE",
    "Comparison",
    "NotReproducedError",
    "Reproduction",
    "reference_families",
    "reproduce",
]
