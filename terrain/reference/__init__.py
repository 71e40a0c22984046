"""Reference forwards written only from the anatomy's roles, compared with the library.

Importing this package registers every family entry.
"""

from __future__ import annotations

from terrain.reference import bert, decoders, qwen3_5, t5, vit  # noqa: F401  (registration side effect)
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
