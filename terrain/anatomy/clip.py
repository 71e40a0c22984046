"""CLIP in the transformers layout: CLIPModel, CLIPVisionModel(WithProjection), CLIPTextModel.

Layout, from transformers' CLIP modules (checkpoint names, as saved): each tower under
`vision_model.` / `text_model.` (CLIPVisionModel and CLIPTextModel save without it);
the vision tower has `embeddings.class_embedding` (d), `embeddings.patch_embedding`
(conv, no bias), `embeddings.position_embedding` (patches + 1, d), `pre_layrnorm` (a norm
on the embeddings) and `post_layernorm`; the text tower `embeddings.token_embedding`,
`embeddings.position_embedding` and `final_layer_norm`. Each layer of
`encoder.layers.N` holds `self_attn.{q,k,v,out}_proj`, `layer_norm1` (pre-attention),
`mlp.fc1`/`mlp.fc2` and `layer_norm2` (pre-MLP). The joint space: `visual_projection`,
`text_projection` (no bias) and the temperature `logit_scale`. Stacks "vision" and "text"
hold each tower's embeddings and layers; Dimensions gives the vision tower's widths when
there is one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from terrain.anatomy.base import (
    Anatomy,
    Dimensions,
    Rule,
    ShapeKey,
    TensorSource,
    check_layer_count,
    check_shapes,
    classify,
    rule,
    unclaimed,
)
from terrain.anatomy.config_fields import image_grid, optional_int, require_int, sub_config
from terrain.anatomy.registry import register

_WB = r"\.(weight|bias)"
PER_LAYER = ("q", "k", "v", "o", "mlp_up", "mlp_down", "norm_attn", "norm_mlp")


def _layer_rules(prefix: str, stack: str) -> list[Rule]:
    lay = prefix + r"encoder\.layers\.(?P<layer>\d+)\."
    return [
        rule(lay + r"self_attn\.q_proj" + _WB, stack, "q"),
        rule(lay + r"self_attn\.k_proj" + _WB, stack, "k"),
        rule(lay + r"self_attn\.v_proj" + _WB, stack, "v"),
        rule(lay + r"self_attn\.out_proj" + _WB, stack, "o"),
        rule(lay + r"layer_norm1" + _WB, stack, "norm_attn"),
        rule(lay + r"mlp\.fc1" + _WB, stack, "mlp_up"),
        rule(lay + r"mlp\.fc2" + _WB, stack, "mlp_down"),
        rule(lay + r"layer_norm2" + _WB, stack, "norm_mlp"),
    ]


def _vision_rules(prefix: str) -> list[Rule]:
    emb = prefix + r"embeddings\."
    return [
        rule(emb + r"class_embedding", "vision", "cls_token", kind="weight"),
        rule(emb + r"patch_embedding" + _WB, "vision", "patch_embed"),
        rule(emb + r"position_embedding\.weight", "vision", "embed_positions"),
        rule(prefix + r"pre_layrnorm" + _WB, "vision", "norm_embed"),
        rule(prefix + r"post_layernorm" + _WB, "vision", "norm_final"),
        *_layer_rules(prefix, "vision"),
    ]


def _text_rules(prefix: str) -> list[Rule]:
    emb = prefix + r"embeddings\."
    return [
        rule(emb + r"token_embedding\.weight", "text", "embed_tokens"),
        rule(emb + r"position_embedding\.weight", "text", "embed_positions"),
        rule(prefix + r"final_layer_norm" + _WB, "text", "norm_final"),
        *_layer_rules(prefix, "text"),
    ]


HEAD_RULES = [
    rule(r"visual_projection\.weight", "head", "vision_proj"),
    rule(r"text_projection\.weight", "head", "text_proj"),
    rule(r"logit_scale", "head", "logit_scale", kind="weight"),
]
SKIP = (
    unclaimed(
        r"(vision_model\.|text_model\.)?embeddings\.position_ids",
        "buffer of position indices saved by old checkpoints, not a parameter",
    ),
)


def _tower_shapes(
    name: str, tower: Mapping[str, Any], stack: str
) -> tuple[dict[ShapeKey, tuple[int, ...]], int, int, int, int]:
    d = require_int(name, tower, "hidden_size")
    n_heads = require_int(name, tower, "num_attention_heads")
    d_ff = require_int(name, tower, "intermediate_size")
    n_layers = require_int(name, tower, "num_hidden_layers")
    shapes: dict[ShapeKey, tuple[int, ...]] = {
        **{(stack, r): (d, d) for r in ("q", "k", "v", "o")},
        (stack, "mlp_up"): (d_ff, d),
        (stack, "mlp_down"): (d, d_ff),
        **{(stack, r): (d,) for r in ("norm_attn", "norm_mlp", "norm_final", "norm_embed")},
    }
    if stack == "vision":
        patch = require_int(name, tower, "patch_size")
        grid = image_grid(name, tower, "image_size", patch)
        channels = optional_int(name, tower, "num_channels", 3)
        shapes[(stack, "cls_token")] = (d,)
        shapes[(stack, "patch_embed")] = (d, channels, patch, patch)
        shapes[(stack, "embed_positions")] = (grid + 1, d)
    else:
        shapes[(stack, "embed_tokens")] = (require_int(name, tower, "vocab_size"), d)
        positions = require_int(name, tower, "max_position_embeddings")
        shapes[(stack, "embed_positions")] = (positions, d)
    return shapes, d, n_heads, d_ff, n_layers


@register("clip", model_types=("clip", "clip_vision_model", "clip_text_model"))
def build(source: TensorSource, config: Mapping[str, Any]) -> Anatomy:
    name = source.name
    model_type = config.get("model_type")
    towers: dict[str, Mapping[str, Any]] = {}
    rules: list[Rule] = []
    if model_type == "clip":
        towers = {
            "vision": sub_config(name, config, "vision_config"),
            "text": sub_config(name, config, "text_config"),
        }
        rules = [*_vision_rules(r"vision_model\."), *_text_rules(r"text_model\.")]
    elif model_type == "clip_text_model":
        towers = {"text": config}
        rules = _text_rules(r"(?:text_model\.)?")
    else:
        towers = {"vision": config}
        rules = _vision_rules(r"(?:vision_model\.)?")
    shapes = source.tensor_shapes()
    roles, left_out = classify(name, "clip", shapes, [*rules, *HEAD_RULES], SKIP)
    expected: dict[ShapeKey, tuple[int, ...]] = {}
    layers: dict[str, int] = {}
    widths: dict[str, tuple[int, int, int]] = {}
    for stack, tower in towers.items():
        tower_shapes, d, n_heads, d_ff, n_layers = _tower_shapes(name, tower, stack)
        expected.update(tower_shapes)
        layers[stack] = n_layers
        widths[stack] = (d, n_heads, d_ff)
        for role in PER_LAYER:
            check_layer_count(name, roles, stack, role, n_layers)
    projection = optional_int(name, config, "projection_dim", 512)
    if "vision" in widths:
        expected["vision_proj"] = (projection, widths["vision"][0])
    if "text" in widths:
        expected["text_proj"] = (projection, widths["text"][0])
    expected["logit_scale"] = ()
    check_shapes(name, "clip", shapes, roles, expected)
    main = "vision" if "vision" in widths else "text"
    d, n_heads, d_ff = widths[main]
    vocab = towers["text"].get("vocab_size", 0) if "text" in towers else 0
    dims = Dimensions(
        d_model=d,
        n_heads=n_heads,
        d_head=d // n_heads,
        d_ff=d_ff,
        vocab_size=int(vocab),
        layers=layers,
    )
    return Anatomy("clip", source, dims, tuple(roles), left_out)
