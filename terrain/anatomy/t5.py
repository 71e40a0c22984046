"""T5 v1.0 (ReLU MLP `wi`/`wo`) and T5 v1.1 / UMT5 (gated MLP `wi_0` gate, `wi_1` up).

Layout, from transformers' T5Model: `shared` (token embedding, tied to the stacks'
`embed_tokens`), per block `{encoder,decoder}.block.N.layer.0.SelfAttention.{q,k,v,o}`,
block 0 alone holds `relative_attention_bias` (buckets x heads), `layer.0.layer_norm`
(RMS-style, gain only); the decoder's `layer.1` is `EncDecAttention` (cross-attention)
and its MLP moves to `layer.2`. `final_layer_norm` closes each stack; `lm_head` is
present when untied (released v1.1 checkpoints). transformers 5 ties it to `shared` for
every T5 (T5Config forces tie_word_embeddings=True and keeps the v1.1 flag as
`scale_decoder_outputs`), so replicas it builds store none. UMT5 (and MT5) share this
layout; UMT5 holds a relative_attention_bias in every block, not only block 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from terrain.anatomy.base import (
    Anatomy,
    Dimensions,
    Rule,
    TensorSource,
    check_layer_count,
    check_shape,
    classify,
    rule,
)
from terrain.anatomy.config_fields import require_int
from terrain.anatomy.registry import register

_MLP_ROLE = {"wi": "mlp_up", "wi_0": "mlp_gate", "wi_1": "mlp_up", "wo": "mlp_down"}


def _mlp_role(m: re.Match[str]) -> str:
    return _MLP_ROLE[m.group("w")]


def _stack_rules(stack: str, mlp_sub: int) -> list[Rule]:
    block = stack + r"\.block\.(?P<layer>\d+)\.layer\."
    rules = [
        rule(block + r"0\.SelfAttention\.(?P<role>[qkvo])\.weight", stack, lambda m: m["role"]),
        rule(block + r"0\.SelfAttention\.relative_attention_bias\.weight", stack, "position_bias"),
        rule(block + r"0\.layer_norm\.weight", stack, "norm_attn"),
        rule(
            block + rf"{mlp_sub}\.DenseReluDense\.(?P<w>wi|wi_0|wi_1|wo)\.weight", stack, _mlp_role
        ),
        rule(block + rf"{mlp_sub}\.layer_norm\.weight", stack, "norm_mlp"),
        rule(stack + r"\.final_layer_norm\.weight", stack, "norm_final"),
        rule(stack + r"\.embed_tokens\.weight", stack, "embed_tokens"),
    ]
    if stack == "decoder":
        rules += [
            rule(
                block + r"1\.EncDecAttention\.(?P<role>[qkvo])\.weight",
                stack,
                lambda m: "x" + m["role"],
            ),
            rule(block + r"1\.layer_norm\.weight", stack, "norm_cross"),
        ]
    return rules


RULES = (
    rule(r"shared\.weight", "embeddings", "embed_tokens"),
    rule(r"lm_head\.weight", "head", "lm_head"),
    *_stack_rules("encoder", 1),
    *_stack_rules("decoder", 2),
)


@register("t5", model_types=("t5", "umt5", "mt5"))
def build(source: TensorSource, config: Mapping[str, Any]) -> Anatomy:
    name = source.name
    shapes = source.tensor_shapes()
    roles, left_out = classify(name, "t5", shapes, RULES, ())
    d_model = require_int(name, config, "d_model")
    n_heads = require_int(name, config, "num_heads")
    d_head = require_int(name, config, "d_kv")
    n_layers = require_int(name, config, "num_layers")
    layers = {"encoder": n_layers}
    if any(r.stack == "decoder" for r in roles):  # T5EncoderModel checkpoints have no decoder
        dec = config.get("num_decoder_layers")
        layers["decoder"] = require_int(name, config, "num_decoder_layers") if dec else n_layers
    dims = Dimensions(
        d_model=d_model,
        n_heads=n_heads,
        d_head=d_head,
        d_ff=require_int(name, config, "d_ff"),
        vocab_size=require_int(name, config, "vocab_size"),
        layers=layers,
    )
    attention_roles = {
        "encoder": ("q", "k", "v", "o"),
        "decoder": ("q", "k", "v", "o", "xq", "xk", "xv", "xo"),
    }
    gated = any(r.role == "mlp_gate" for r in roles)  # v1.1 / UMT5: wi_0 in every block
    mlp_roles = ("mlp_gate", "mlp_up", "mlp_down") if gated else ("mlp_up", "mlp_down")
    for stack, count in layers.items():
        for role in (*attention_roles[stack], *mlp_roles):
            check_layer_count(name, roles, stack, role, count)
    inner = n_heads * d_head
    n_buckets = require_int(name, config, "relative_attention_num_buckets")
    expected = {
        "q": (inner, d_model),
        "k": (inner, d_model),
        "v": (inner, d_model),
        "o": (d_model, inner),
        "mlp_gate": (dims.d_ff, d_model),
        "mlp_up": (dims.d_ff, d_model),
        "mlp_down": (d_model, dims.d_ff),
        "embed_tokens": (dims.vocab_size, d_model),
        "position_bias": (n_buckets, n_heads),
    }
    expected.update({"x" + k: expected[k] for k in "qkvo"})
    for r in roles:
        if r.role in expected:
            check_shape(name, shapes, r, expected[r.role], f"t5 {r.role} from config.json")
    return Anatomy("t5", source, dims, tuple(roles), left_out)
