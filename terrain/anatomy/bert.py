"""BERT (and BERT-shaped encoders such as all-MiniLM-L6-v2).

Layout, from transformers' BertModel: `embeddings.{word,position,token_type}_embeddings`,
`embeddings.LayerNorm`, per layer `encoder.layer.N.attention.self.{query,key,value}`,
`attention.output.dense` (O), `attention.output.LayerNorm` (post-attention norm),
`intermediate.dense` (MLP up), `output.dense` (MLP down), `output.LayerNorm`.
Task heads (`cls.*`, `pooler`) are claimed as head roles; weights may carry a `bert.` prefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from terrain.anatomy.base import (
    Anatomy,
    Dimensions,
    TensorSource,
    check_layer_count,
    check_shape,
    classify,
    rule,
    unclaimed,
)
from terrain.anatomy.config_fields import require_int
from terrain.anatomy.registry import register

_L = r"encoder\.layer\.(?P<layer>\d+)\."
_WB = r"\.(weight|bias)"

RULES = (
    rule(r"embeddings\.word_embeddings\.weight", "embeddings", "embed_tokens"),
    rule(r"embeddings\.position_embeddings\.weight", "embeddings", "embed_positions"),
    rule(r"embeddings\.token_type_embeddings\.weight", "embeddings", "embed_token_type"),
    rule(r"embeddings\.LayerNorm" + _WB, "embeddings", "norm_embed"),
    rule(_L + r"attention\.self\.query" + _WB, "encoder", "q"),
    rule(_L + r"attention\.self\.key" + _WB, "encoder", "k"),
    rule(_L + r"attention\.self\.value" + _WB, "encoder", "v"),
    rule(_L + r"attention\.output\.dense" + _WB, "encoder", "o"),
    rule(_L + r"attention\.output\.LayerNorm" + _WB, "encoder", "norm_attn"),
    rule(_L + r"intermediate\.dense" + _WB, "encoder", "mlp_up"),
    rule(_L + r"output\.dense" + _WB, "encoder", "mlp_down"),
    rule(_L + r"output\.LayerNorm" + _WB, "encoder", "norm_mlp"),
    rule(r"pooler\.dense" + _WB, "head", "pooler"),
    rule(r"cls\.predictions\.transform\.dense" + _WB, "head", "lm_transform"),
    rule(r"cls\.predictions\.transform\.LayerNorm" + _WB, "head", "lm_norm"),
    rule(r"cls\.predictions\.decoder\.weight", "head", "lm_head"),
    rule(r"cls\.predictions\.(decoder\.)?bias", "head", "lm_bias"),
    rule(r"cls\.seq_relationship" + _WB, "head", "nsp"),
)
SKIP = (unclaimed(r"embeddings\.position_ids", "buffer of position indices, not a parameter"),)


@register("bert", model_types=("bert",))
def build(source: TensorSource, config: Mapping[str, Any]) -> Anatomy:
    name = source.name
    shapes = source.tensor_shapes()
    roles, left_out = classify(name, "bert", shapes, RULES, SKIP, prefixes=("bert.",))
    d_model = require_int(name, config, "hidden_size")
    n_heads = require_int(name, config, "num_attention_heads")
    dims = Dimensions(
        d_model=d_model,
        n_heads=n_heads,
        d_head=d_model // n_heads,
        d_ff=require_int(name, config, "intermediate_size"),
        vocab_size=require_int(name, config, "vocab_size"),
        layers={"encoder": require_int(name, config, "num_hidden_layers")},
    )
    for role in ("q", "k", "v", "o", "mlp_up", "mlp_down"):
        check_layer_count(name, roles, "encoder", role, dims.layers["encoder"])
    expected = {
        "q": (d_model, d_model),
        "k": (d_model, d_model),
        "v": (d_model, d_model),
        "o": (d_model, d_model),
        "mlp_up": (dims.d_ff, d_model),
        "mlp_down": (d_model, dims.d_ff),
        "embed_tokens": (dims.vocab_size, d_model),
    }
    for r in roles:
        if r.kind == "weight" and r.role in expected:
            check_shape(name, shapes, r, expected[r.role], f"bert {r.role} from config.json")
    return Anatomy("bert", source, dims, tuple(roles), left_out)
