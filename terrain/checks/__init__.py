"""Property declarations and the statistics their findings report (importing registers).

Each module declares a theme's properties (terrain.property.Property) beside the function
that evaluates them on a model: it reads the measures' results, puts the statistic beside
its null and expectation, and returns a Finding with its evidence. The pytest properties
only run these, record and compare.
"""

from __future__ import annotations

from terrain.checks import (  # noqa: F401  (registration side effect)
    census,
    crosslayer,
    delta,
    embedding,
    esd,
    forward,
    modulators,
    qk,
    representation,
    sparsity,
    spectra,
    spectra_least,
    symmetry,
    units,
    wordnet,
    wordnet_stability,
)
