"""DINOv2: a pre-LN ViT with per-channel layer scale on both residual branches.

Layout, from transformers' Dinov2Model (checkpoint names, as saved): `embeddings.cls_token`
(1, 1, d), `embeddings.mask_token` (1, d), `embeddings.position_embeddings`
(1, patches + 1, d), `embeddings.patch_embeddings.projection` (conv, d x C x p x p); per layer
`encoder.layer.N.norm1`, `attention.attention.{query,key,value}`, `attention.output.dense`
(O), `layer_scale1.lambda1`, `norm2`, `mlp.fc1`/`mlp.fc2` (or, with `use_swiglu_ffn`, the
fused `mlp.weights_in` = [gate | up] and `mlp.weights_out`), `layer_scale2.lambda1`; then
`layernorm`. The MLP width is hidden·mlp_ratio (SwiGLU: 2/3 of it, rounded up to a
multiple of 8). Dinov2ForImageClassification adds `classifier` and the `dinov2.` prefix.

Symmetries, from Dinov2Layer: q, k, v, o with biases, per-channel layer scale λ on the
attention and MLP outputs (λ ⊙ O z: it multiplies O's rows, so O^h B⁻¹ still undoes
V^h → B V^h), GELU MLP or SwiGLU (`use_swiglu_ffn`: silu(gate) ⊙ up, then the linear
branch scales). LayerNorm (mean subtracted): no residual rotation is tested.

Reference: tokens = [cls | patches] + position table (grid as stored: no interpolation);
h = x + λ₁ ⊙ O·attn(LN₁ x);  y = h + λ₂ ⊙ MLP(LN₂ h), MLP = fc2 gelu(fc1) or SwiGLU
W_down(silu(W_gate n) ⊙ W_up n).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from terrain import family
from terrain.anatomy import Anatomy, Dimensions, TensorSource, classify, rule, unclaimed
from terrain.anatomy.config_fields import image_grid, optional_int, require_int, require_number
from terrain.anatomy.shapes import (
    check_layer_count,
    check_shapes,
    mlp_and_norm_shapes,
    split_fused,
)
from terrain.families.vit import attend, layer_norm, patch_embed
from terrain.reference import ops
from terrain.reference.family import (
    Block,
    Context,
    FamilyReference,
    NotReproducedError,
    find,
    maybe,
    read,
)
from terrain.symmetry.catalogue import LAYERNORM_RESIDUAL, standard_layers
from terrain.symmetry.layout import Architecture
from terrain.symmetry.residual import ROTATION
from terrain.symmetry.weights import Weights
from terrain.tracing import config_int, head_calls

MODEL_TYPES = ("dinov2",)

_L = r"encoder\.layer\.(?P<layer>\d+)\."
_WB = r"\.(weight|bias)"
_E = "embeddings"
_S = "encoder"

RULES = (
    rule(r"embeddings\.cls_token", _E, "cls_token", kind="weight"),
    rule(r"embeddings\.position_embeddings", _E, "embed_positions", kind="weight"),
    rule(r"embeddings\.patch_embeddings\.projection" + _WB, _E, "patch_embed"),
    rule(_L + r"norm1" + _WB, _S, "norm_attn"),
    rule(_L + r"attention\.attention\.query" + _WB, _S, "q"),
    rule(_L + r"attention\.attention\.key" + _WB, _S, "k"),
    rule(_L + r"attention\.attention\.value" + _WB, _S, "v"),
    rule(_L + r"attention\.output\.dense" + _WB, _S, "o"),
    rule(_L + r"layer_scale1\.lambda1", _S, "layer_scale_attn", kind="weight"),
    rule(_L + r"norm2" + _WB, _S, "norm_mlp"),
    rule(_L + r"mlp\.fc1" + _WB, _S, "mlp_up"),
    rule(_L + r"mlp\.fc2" + _WB, _S, "mlp_down"),
    rule(_L + r"mlp\.weights_in" + _WB, _S, "mlp_gate_up"),
    rule(_L + r"mlp\.weights_out" + _WB, _S, "mlp_down"),
    rule(_L + r"layer_scale2\.lambda1", _S, "layer_scale_mlp", kind="weight"),
    rule(r"layernorm" + _WB, _S, "norm_final"),
    rule(r"classifier" + _WB, "head", "classifier"),
)
SKIP = (
    unclaimed(
        r"embeddings\.mask_token",
        "learned mask embedding, used only for masked-image inputs (bool_masked_pos)",
    ),
)


def build(source: TensorSource, config: Mapping[str, Any]) -> Anatomy:
    name = source.name
    shapes = source.tensor_shapes()
    stored, left_out = classify(name, "dinov2", shapes, RULES, SKIP, prefixes=("dinov2.",))
    roles = split_fused(  # SwiGLU: chunk(2) of the fused input projection
        name,
        shapes,
        stored,
        "mlp_gate_up",
        ("mlp_gate", "mlp_up"),
        what="DINOv2 SwiGLU weights_in holds gate and up, one above the other",
    )
    d = require_int(name, config, "hidden_size")
    n_heads = require_int(name, config, "num_attention_heads")
    hidden = int(d * require_number(name, config, "mlp_ratio"))
    swiglu = bool(config.get("use_swiglu_ffn", False))
    d_ff = (int(hidden * 2 / 3) + 7) // 8 * 8 if swiglu else hidden
    dims = Dimensions(
        d_model=d,
        n_heads=n_heads,
        d_head=d // n_heads,
        d_ff=d_ff,
        vocab_size=0,  # images: no vocabulary
        layers={_S: require_int(name, config, "num_hidden_layers")},
    )
    mlp_roles = ("mlp_gate", "mlp_up", "mlp_down") if swiglu else ("mlp_up", "mlp_down")
    for role in ("q", "k", "v", "o", *mlp_roles, "layer_scale_attn", "layer_scale_mlp"):
        check_layer_count(name, roles, _S, role, dims.layers[_S])
    patch = require_int(name, config, "patch_size")
    channels = optional_int(name, config, "num_channels", 3)
    patches = image_grid(name, config, "image_size", patch)
    check_shapes(
        name,
        "dinov2",
        shapes,
        roles,
        {
            **{r: (d, d) for r in ("q", "k", "v", "o")},
            **mlp_and_norm_shapes(d, d_ff),
            "layer_scale_attn": (d,),
            "layer_scale_mlp": (d,),
            "cls_token": (1, 1, d),
            "embed_positions": (1, patches + 1, d),
            "patch_embed": (d, channels, patch, patch),
        },
    )
    return Anatomy("dinov2", source, dims, tuple(roles), left_out)


# Symmetries ------------------------------------------------------------------------------


def describe(anatomy: Anatomy, config: Mapping[str, Any], weights: Weights) -> Architecture:
    act = "silu" if config.get("use_swiglu_ffn") else str(config.get("hidden_act", "gelu"))
    attention, mlp = standard_layers(anatomy, [_S], act)
    return Architecture(
        "dinov2", tuple(attention), tuple(mlp), None, {ROTATION: LAYERNORM_RESIDUAL}
    )


# Reference -------------------------------------------------------------------------------


def embeddings(anatomy: Anatomy, stack: str, ctx: Context) -> torch.Tensor:
    x = patch_embed(anatomy, ctx, _E)
    cls = read(anatomy, ctx, _E, "cls_token", None).reshape(1, 1, -1).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1)
    table = read(anatomy, ctx, _E, "embed_positions", None).reshape(1, -1, x.shape[-1])
    if table.shape[1] != x.shape[1]:
        raise NotReproducedError("DINOv2 position interpolation (image grid ≠ stored grid)")
    return x + table


def block(anatomy: Anatomy, b: Block, x: torch.Tensor, ctx: Context) -> torch.Tensor:
    s, i = b.stack, b.layer
    eps = float(ctx.config.get("layer_norm_eps", 1e-6))

    def lin(role: str, h: torch.Tensor) -> torch.Tensor:
        return ops.linear(h, read(anatomy, ctx, s, role, i), maybe(anatomy, ctx, s, role, i))

    lam1 = read(anatomy, ctx, s, "layer_scale_attn", i)
    lam2 = read(anatomy, ctx, s, "layer_scale_mlp", i)
    n = layer_norm(anatomy, ctx, s, "norm_attn", i, x, eps)
    h = x + lam1 * attend(anatomy, ctx, s, i, n, anatomy.dims.d_head)
    n = layer_norm(anatomy, ctx, s, "norm_mlp", i, h, eps)
    if find(anatomy, s, "mlp_gate", i) is not None:
        inner = ops.activation("silu", lin("mlp_gate", n)) * lin("mlp_up", n)
    else:
        inner = ops.activation(str(ctx.config.get("hidden_act", "gelu")), lin("mlp_up", n))
    return h + lam2 * lin("mlp_down", inner)


# Call census -----------------------------------------------------------------------------


def census(config: Mapping[str, Any], architecture: str) -> dict[str, int]:
    """DINOv2: the patch conv; per layer norm1, norm2, q k v o, two (SwiGLU: three) MLP
    Linears, one activation and two layer scales; the final layernorm."""
    L = config_int(config, "num_hidden_layers")
    head = head_calls(architecture, {"Dinov2Model": 0, "Dinov2ForImageClassification": 1}, "dinov2")
    mlp = 3 if config.get("use_swiglu_ffn") else 2
    return {
        "conv": 1,
        "norm": 2 * L + 1,
        "linear": (4 + mlp) * L + head,
        "activation": L,
        "layer_scale": 2 * L,
    }


FAMILY = family.register(
    family.Family(
        name="dinov2",
        model_types=MODEL_TYPES,
        anatomy=build,
        norms=family.Norms(
            "pre-LN LayerNorm (gain and bias): norm1 before attention, norm2 before the MLP, "
            "each branch scaled per channel (layer_scale1/2) before the add; layernorm last"
        ),
        heads=family.Absent("one encoder stack: the anatomy's dimensions give its heads"),
        stack_counts=family.per_type(
            MODEL_TYPES, {_S: family.StackCount(None, "num_hidden_layers")}
        ),
        symmetry=describe,
        reference=FamilyReference(lambda anatomy: [_S], block, embeddings),
        census=family.per_type(MODEL_TYPES, census),
        text=family.per_type(
            MODEL_TYPES, family.Absent("images only: no tokenizer and no text stack")
        ),
        module=family.TransformersModule(),
    )
)
