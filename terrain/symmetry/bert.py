"""BERT: the catalogue entry, derived from transformers' BertLayer.

Attention: q, k, v are nn.Linear with bias, scores q·k/√d_head plus an additive padding
mask, softmax, then O (with bias). Nothing acts on q or k between the projection and the
dot product (absolute position embeddings are added to the input, not to q/k), so the
Q/K gauge is the full GL(d_head) per head with the biases transformed alongside, and the
V/O gauge likewise (b_V → B b_V; b_O is untouched).

MLP: intermediate.dense → GELU (`hidden_act`) → output.dense: permutations only.

Residual: BERT is post-LN with LayerNorm, which subtracts the mean: it commutes with
permutations of the hidden coordinates but not with rotations, and the model's output (the
last hidden state) would come out permuted, not unchanged. No residual symmetry is tested.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from terrain.anatomy import Anatomy
from terrain.symmetry.attention import QK
from terrain.symmetry.catalogue import describes, standard_layers
from terrain.symmetry.layout import Architecture
from terrain.symmetry.residual import ROTATION
from terrain.symmetry.weights import Weights

STACK = "encoder"


@describes("bert")
def describe(anatomy: Anatomy, config: Mapping[str, Any], weights: Weights) -> Architecture:
    attention, mlp = standard_layers(anatomy, [STACK], str(config.get("hidden_act", "gelu")))
    not_applicable = {
        ROTATION: "post-LN LayerNorm subtracts the mean: only permutations of the hidden "
        "coordinates commute with it, and they permute the output instead of preserving it"
    }
    position = config.get("position_embedding_type", "absolute")
    if position != "absolute":
        not_applicable[QK] = f"position_embedding_type {position!r} adds position terms to q and k"
    return Architecture("bert", tuple(attention), tuple(mlp), None, not_applicable)
