"""How many query and key/value heads each attention stack has, checked against W_Q and W_K.

The anatomy's dimensions give the heads of a one-tower model; a two-tower model (CLIP,
open_clip) states each tower's heads in its own config section. Either way the numbers
must split W_Q's and W_K's rows exactly, or the stack's QK forms are skipped with why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from terrain.anatomy import Anatomy
from terrain.battery.result import HeadLayout

QK_PAIRS = (("q", "k", False), ("xq", "xk", True))
# open_clip's defaults when its tower config omits them (as terrain/anatomy/open_clip.py).
_OPEN_CLIP_HEAD_WIDTH = 64
_OPEN_CLIP_TEXT_HEADS = 8


def _tower_heads(config: Mapping[str, Any], stack: str) -> tuple[int, int, int, str] | None:
    """Heads of a two-tower model's stack from its tower config (HF or open_clip)."""
    hf = config.get(f"{stack}_config")
    if isinstance(hf, Mapping):
        heads = hf.get("num_attention_heads") or hf.get("num_heads")
        hidden = hf.get("hidden_size")
        if isinstance(heads, int) and isinstance(hidden, int) and heads > 0:
            d_head = hf.get("head_dim") or hidden // heads
            kv = hf.get("num_key_value_heads") or heads
            return heads, int(kv), int(d_head), f"config.json {stack}_config"
    oc = config.get(f"{stack}_cfg")
    if isinstance(oc, Mapping) and isinstance(oc.get("width"), int):
        width = int(oc["width"])
        if stack == "vision":
            heads = max(1, width // int(oc.get("head_width") or _OPEN_CLIP_HEAD_WIDTH))
        else:
            heads = int(oc.get("heads") or _OPEN_CLIP_TEXT_HEADS)
        return heads, heads, width // heads, f"config.json {stack}_cfg"
    return None


def head_layouts(
    anatomy: Anatomy, config: Mapping[str, Any]
) -> tuple[dict[str, HeadLayout], dict[str, str]]:
    """Heads per stack with attention, checked against the q/k shapes; else a reason."""
    shapes = anatomy.source.tensor_shapes()
    found: dict[str, HeadLayout] = {}
    skipped: dict[str, str] = {}
    dims = anatomy.dims
    for stack in anatomy.stacks():
        for q_role, k_role, _ in QK_PAIRS:
            qs, ks = anatomy.layers(stack, q_role), anatomy.layers(stack, k_role)
            if not qs or not ks or stack in found:
                continue
            q_rows = qs[0].shape(shapes[qs[0].tensor])[0]
            k_rows = ks[0].shape(shapes[ks[0].tensor])[0]
            tower = _tower_heads(config, stack)
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
