"""DINOv2: a pre-LN ViT with per-channel layer scale on both residual branches.

Layout, from transformers' Dinov2Model (checkpoint names, as saved): `embeddings.cls_token`
(1, 1, d), `embeddings.mask_token` (1, d), `embeddings.position_embeddings`
(1, patches + 1, d), `embeddings.patch_embeddings.projection` (conv, d x C x p x p); per layer
`encoder.layer.N.norm1`, `attention.attention.{query,key,value}`, `attention.output.dense`
(O), `layer_scale1.lambda1`, `norm2`, `mlp.fc1`/`mlp.fc2` (or, with `use_swiglu_ffn`, the
fused `mlp.weights_in` = [gate | up] and `mlp.weights_out`), `layer_scale2.lambda1`; then
`layernorm`. The MLP width is hidden·mlp_ratio (SwiGLU: 2/3 of it, rounded up to a
multiple of 8). Dinov2ForImageClassification adds `classifier` and the `dinov2.` prefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from terrain.anatomy.base import (
    Anatomy,
    Dimensions,
    TensorRole,
    TensorSource,
    check_layer_count,
    check_shapes,
    classify,
    rule,
    split_equal,
    unclaimed,
)
from terrain.anatomy.config_fields import image_grid, optional_int, require_int, require_number
from terrain.anatomy.registry import register

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


@register("dinov2", model_types=("dinov2",))
def build(source: TensorSource, config: Mapping[str, Any]) -> Anatomy:
    name = source.name
    shapes = source.tensor_shapes()
    stored, left_out = classify(name, "dinov2", shapes, RULES, SKIP, prefixes=("dinov2.",))
    roles: list[TensorRole] = []
    for r in stored:
        if r.role == "mlp_gate_up":  # SwiGLU: chunk(2) of the fused input projection
            roles += split_equal(
                name,
                shapes,
                r,
                ("mlp_gate", "mlp_up"),
                what="DINOv2 SwiGLU weights_in holds gate and up, one above the other",
            )
        else:
            roles.append(r)
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
            "mlp_gate": (d_ff, d),
            "mlp_up": (d_ff, d),
            "mlp_down": (d, d_ff),
            "norm_attn": (d,),
            "norm_mlp": (d,),
            "norm_final": (d,),
            "layer_scale_attn": (d,),
            "layer_scale_mlp": (d,),
            "cls_token": (1, 1, d),
            "embed_positions": (1, patches + 1, d),
            "patch_embed": (d, channels, patch, patch),
        },
    )
    return Anatomy("dinov2", source, dims, tuple(roles), left_out)
