"""T5 (v1.0, v1.1, mT5, UMT5): the catalogue entry, derived from transformers' T5Block.

Attention: q, k, v, o are bias-free nn.Linear; scores are q·k with no 1/√d scaling, plus
the relative position bias (a per-head table indexed by bucketed offsets: added to the
scores, independent of q and k) and the mask. So the Q/K gauge is the full GL(d_kv) per
head, for self-attention and for the decoder's cross-attention (q from the decoder, k
and v from the encoder's output), and V/O likewise. There are no biases to transform.

MLP: `wi` → ReLU → `wo` (v1.0): permutations and positive scalings; `wi_0` (gate) → GELU,
times `wi_1` (linear branch) → `wo` (v1.1 gated-gelu): permutations and nonzero scalings
of the linear branch.

Residual: pre-norm with T5LayerNorm = g ⊙ h / √(mean h² + eps), an RMS norm without mean
subtraction, so the stream may be rotated after folding the gains: encoder and decoder
share the token table, so one Q serves both stacks; the encoder's final norm is read by
every decoder cross-attention's k and v, the decoder's final norm by the LM head. With a
tied head (t5-small) the folded head differs from the rotated table: the transformed
weights untie them (the function is unchanged).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from terrain.anatomy import Anatomy
from terrain.symmetry.catalogue import (
    attention_layout,
    describes,
    layer_indices,
    one,
    optional_projection,
    output_head,
    projection,
)
from terrain.symmetry.layout import (
    Architecture,
    AttentionLayout,
    MlpLayout,
    NormSite,
    ResidualLayout,
)
from terrain.symmetry.residual import ROTATION
from terrain.symmetry.weights import Projection, Weights


def activation(config: Mapping[str, Any]) -> str:
    """The MLP activation, as T5Config derives it from `feed_forward_proj`."""
    if isinstance(config.get("dense_act_fn"), str):
        return str(config["dense_act_fn"])
    proj = str(config.get("feed_forward_proj", "relu"))
    act = proj.removeprefix("gated-")
    return "gelu_new" if proj == "gated-gelu" else act


def _attention(anatomy: Anatomy, stack: str, i: int, prefix: str = "") -> AttentionLayout:
    dims = anatomy.dims
    return attention_layout(
        anatomy, stack, i, (dims.n_heads, dims.n_heads, dims.d_head), prefix=prefix
    )


def _gain(anatomy: Anatomy, stack: str, role: str, layer: int | None) -> str:
    entry = one(anatomy, stack, role, layer, "weight")
    if entry is None:
        raise KeyError(f"model {anatomy.model_name!r}: no {stack}.{role} gain in layer {layer}")
    return entry.tensor


@describes("t5")
def describe(anatomy: Anatomy, config: Mapping[str, Any], weights: Weights) -> Architecture:
    act = activation(config)
    attention: list[AttentionLayout] = []
    mlp: list[MlpLayout] = []
    writers: list[Projection] = []
    norms: list[NormSite] = []
    cross_readers: list[Projection] = []
    stacks = [s for s in ("encoder", "decoder") if layer_indices(anatomy, s)]
    for stack in stacks:
        for i in layer_indices(anatomy, stack):
            self_attn = _attention(anatomy, stack, i)
            attention.append(self_attn)
            norms.append(
                NormSite(
                    _gain(anatomy, stack, "norm_attn", i), (self_attn.q, self_attn.k, self_attn.v)
                )
            )
            writers.append(self_attn.o)
            if stack == "decoder":
                cross = _attention(anatomy, stack, i, "x")
                attention.append(cross)
                norms.append(NormSite(_gain(anatomy, stack, "norm_cross", i), (cross.q,)))
                cross_readers += [cross.k, cross.v]
                writers.append(cross.o)
            block = MlpLayout(
                f"{stack}.{i}.mlp",
                up=projection(anatomy, stack, "mlp_up", i),
                down=projection(anatomy, stack, "mlp_down", i),
                activation=act,
                gate=optional_projection(anatomy, stack, "mlp_gate", i),
            )
            mlp.append(block)
            readers = (block.up,) if block.gate is None else (block.gate, block.up)
            norms.append(NormSite(_gain(anatomy, stack, "norm_mlp", i), readers))
            writers.append(block.down)

    head = output_head(anatomy, weights)
    not_applicable: dict[str, str] = {}
    residual = None
    if "decoder" not in stacks:
        not_applicable[ROTATION] = (
            "encoder only: the output is the final norm's output, with no linear map after it "
            "to fold its gain into, so a rotation rotates the output instead of preserving it"
        )
    elif head is None:
        not_applicable[ROTATION] = (
            "no LM head in the module: the output is the decoder's final norm, with no linear "
            "map after it to fold its gain into"
        )
    else:
        norms.append(NormSite(_gain(anatomy, "encoder", "norm_final", None), tuple(cross_readers)))
        norms.append(NormSite(_gain(anatomy, "decoder", "norm_final", None), (head,)))
        tables = [r.tensor for r in anatomy.find("embed_tokens")]
        residual = ResidualLayout(tuple(tables), tuple(writers), tuple(norms))
    float32 = {
        ROTATION: "T5LayerNorm computes the mean square in float32 whatever the dtype, and the "
        "rotation changes the order of that sum"
    }
    return Architecture("t5", tuple(attention), tuple(mlp), residual, not_applicable, float32)
