"""terrain: geometric invariants of transformer checkpoints, as measurable values.

The library never imports pytest: `plugins/` and `properties/` turn its
measurements into assertions and reports.
"""

__version__ = "0.1.0"
