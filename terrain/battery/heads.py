"""How many query and key/value heads each attention stack has, checked against W_Q and W_K.

The anatomy's dimensions give the heads of a one-tower model; a family with towers of
their own (CLIP, open_clip, Qwen3.5's vision tower) declares where a tower's config section
states its heads (`Family.heads`). Either way the numbers must split W_Q's and W_K's rows
exactly, or the stack's QK forms are skipped with why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from terrain.anatomy import Anatomy
from terrain.battery.result import HeadLayout
from terrain.family import Absent, get_family

QK_PAIRS = (("q", "k", False), ("xq", "xk", True))


def head_layouts(
    anatomy: Anatomy, config: Mapping[str, Any]
) -> tuple[dict[str, HeadLayout], dict[str, str]]:
    """Heads per stack with attention, checked against the q/k shapes; else a reason."""
    shapes = anatomy.source.tensor_shapes()
    found: dict[str, HeadLayout] = {}
    skipped: dict[str, str] = {}
    dims = anatomy.dims
    towers = get_family(anatomy.family).heads
    for stack in anatomy.stacks():
        for q_role, k_role, _ in QK_PAIRS:
            qs, ks = anatomy.layers(stack, q_role), anatomy.layers(stack, k_role)
            if not qs or not ks or stack in found:
                continue
            q_rows = qs[0].shape(shapes[qs[0].tensor])[0]
            k_rows = ks[0].shape(shapes[ks[0].tensor])[0]
            tower = None if isinstance(towers, Absent) else towers(config, stack)
            if tower is None:
                tower = (dims.n_heads, dims.n_kv_heads, dims.d_head, "the anatomy's dimensions")
            n_h, n_kv, d_h, source = tower
            if q_rows == n_h * d_h and k_rows == n_kv * d_h and n_h % n_kv == 0:
                found[stack] = HeadLayout(n_h, n_kv, d_h, source)
            else:
                skipped[stack] = (
                    f"heads of stack {stack!r} unknown: W_Q has {q_rows} rows and W_K {k_rows}, "
                    f"{source} gives {n_h} query / {n_kv} key heads of {d_h}"
                )
    return found, skipped
