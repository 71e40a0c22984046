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
there is one; each tower's heads come from its own config section.

Symmetries, from CLIPEncoderLayer (vision and text towers): q, k, v, out_proj with biases,
quick_gelu MLP; the text tower's causal mask does not touch q or k. LayerNorm (mean
subtracted): no residual rotation is tested.

Reference: vision tokens = [class | patches] + position table, then pre_layrnorm; text
tokens = token table + positions; h = x + O·attn(LN₁ x) (text: causal and padding
masks);  y = h + fc2 quick_gelu(fc1 LN₂ h).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from terrain import family
from terrain.anatomy import Anatomy, Dimensions, Rule, TensorSource, classify, rule, unclaimed
from terrain.anatomy.config_fields import image_grid, optional_int, require_int, sub_config
from terrain.anatomy.shapes import ShapeKey, check_layer_count, check_shapes
from terrain.families.vit import attend, layer_norm, patch_embed, section_heads, tower_config
from terrain.reference import ops
from terrain.reference.family import Block, Context, FamilyReference, maybe, read
from terrain.symmetry.catalogue import LAYERNORM_RESIDUAL, standard_layers
from terrain.symmetry.layout import Architecture, AttentionLayout, MlpLayout
from terrain.symmetry.residual import ROTATION
from terrain.symmetry.weights import Weights
from terrain.tracing import config_int, head_calls

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


# Symmetries ------------------------------------------------------------------------------


def _towers(anatomy: Anatomy) -> list[str]:
    return [s for s in ("vision", "text") if anatomy.layers(s, "q")]


def describe(anatomy: Anatomy, config: Mapping[str, Any], weights: Weights) -> Architecture:
    attention: list[AttentionLayout] = []
    mlp: list[MlpLayout] = []
    for stack in _towers(anatomy):
        cfg = tower_config(config, stack)
        n_heads = int(cfg.get("num_attention_heads", anatomy.dims.n_heads))
        d_head = int(cfg.get("hidden_size", anatomy.dims.d_model)) // n_heads
        a, m = standard_layers(
            anatomy,
            [stack],
            str(cfg.get("hidden_act", "quick_gelu")),
            heads=(n_heads, n_heads, d_head),
        )
        attention += a
        mlp += m
    return Architecture("clip", tuple(attention), tuple(mlp), None, {ROTATION: LAYERNORM_RESIDUAL})


# Reference -------------------------------------------------------------------------------


def embeddings(anatomy: Anatomy, stack: str, ctx: Context) -> torch.Tensor:
    eps = float(tower_config(ctx.config, stack).get("layer_norm_eps", 1e-5))
    if stack == "text":
        ids = ctx.inputs["input_ids"]
        x = ops.embed(ids, read(anatomy, ctx, stack, "embed_tokens", None))
        return x + read(anatomy, ctx, stack, "embed_positions", None)[: ids.shape[1]]
    x = patch_embed(anatomy, ctx, stack)
    cls = read(anatomy, ctx, stack, "cls_token", None).reshape(1, 1, -1).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1)
    x = x + read(anatomy, ctx, stack, "embed_positions", None)[: x.shape[1]]
    return layer_norm(anatomy, ctx, stack, "norm_embed", None, x, eps)


def block(anatomy: Anatomy, b: Block, x: torch.Tensor, ctx: Context) -> torch.Tensor:
    s, i = b.stack, b.layer
    cfg = tower_config(ctx.config, s)
    eps = float(cfg.get("layer_norm_eps", 1e-5))
    n_heads = int(cfg.get("num_attention_heads", anatomy.dims.n_heads))
    d_head = x.shape[-1] // n_heads
    allowed = None
    if s == "text":
        allowed = ops.causal_mask(x.shape[1], x.device)
        mask = ctx.inputs.get("attention_mask")
        if mask is not None:
            allowed = allowed & ops.padding_mask(mask)

    def lin(role: str, h: torch.Tensor) -> torch.Tensor:
        return ops.linear(h, read(anatomy, ctx, s, role, i), maybe(anatomy, ctx, s, role, i))

    normed = layer_norm(anatomy, ctx, s, "norm_attn", i, x, eps)
    h = x + attend(anatomy, ctx, s, i, normed, d_head, allowed)
    act = str(cfg.get("hidden_act", "quick_gelu"))
    up = lin("mlp_up", layer_norm(anatomy, ctx, s, "norm_mlp", i, h, eps))
    return h + lin("mlp_down", ops.activation(act, up))


# Call census -----------------------------------------------------------------------------


def vision_census(config: Mapping[str, Any], architecture: str) -> dict[str, int]:
    """CLIP vision tower: the patch conv and the position lookup; pre_layrnorm, per layer
    layer_norm1 and 2, q k v out_proj, fc1, fc2 and one activation; post_layernorm
    (applied to the pooled class token); the projection when present."""
    L = config_int(config, "num_hidden_layers")
    head = head_calls(
        architecture, {"CLIPVisionModel": 0, "CLIPVisionModelWithProjection": 1}, "CLIP vision"
    )
    return {
        "conv": 1,
        "embedding": 1,
        "norm": 2 * L + 2,
        "linear": 6 * L + head,
        "activation": L,
    }


_ONE_TOWER = "not written: only the vision tower's census (CLIPVisionModel) is predicted"
FAMILY = family.register(
    family.Family(
        name="clip",
        model_types=("clip", "clip_vision_model", "clip_text_model"),
        anatomy=build,
        norms=family.Norms(
            "pre-LN LayerNorm (gain and bias): layer_norm1 before attention, layer_norm2 "
            "before the MLP; vision: pre_layrnorm on the embeddings, post_layernorm on the "
            "pooled class token; text: final_layer_norm"
        ),
        heads=section_heads,
        stack_counts={
            "clip": {
                "vision": family.StackCount("vision_config", "num_hidden_layers"),
                "text": family.StackCount("text_config", "num_hidden_layers"),
            },
            "clip_vision_model": {"vision": family.StackCount(None, "num_hidden_layers")},
            "clip_text_model": family.Absent(
                "not written: text-tower checkpoints (CLIPTextModel) are not cut into windows"
            ),
        },
        symmetry=describe,
        reference=FamilyReference(_towers, block, embeddings),
        census={
            "clip": family.Absent(_ONE_TOWER + "; CLIPModel runs both towers and the projections"),
            "clip_vision_model": vision_census,
            "clip_text_model": family.Absent(_ONE_TOWER),
        },
        text={
            "clip": family.TextConvention("the text tower (text_model)"),
            "clip_vision_model": family.Absent("the vision tower alone: no text stack"),
            "clip_text_model": family.TextConvention("the module itself (the text tower)"),
        },
        module=family.TransformersModule(),
    )
)
