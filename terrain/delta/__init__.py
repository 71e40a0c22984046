"""Deltas against a base model: what changed, tensor by tensor, from a base checkpoint.

`run_deltas` pairs the roles of a model and its base (terrain/delta/pairing.py: same
canonical role and shape; the rest is listed) and streams the pairs through the measures of
terrain/measures/delta.py: relative change, cosine, the rank, stable rank and effective
rank of ΔW and the base's power-law α. The properties are in terrain/checks/delta.py.
"""

from terrain.delta.pairing import Pair, Pairing, comparable, pair_roles, role_label
from terrain.delta.result import DeltaResult, TensorChange
from terrain.delta.stream import run_deltas

__all__ = [
    "DeltaResult",
    "Pair",
    "Pairing",
    "TensorChange",
    "comparable",
    "pair_roles",
    "role_label",
    "run_deltas",
]
