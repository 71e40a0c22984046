"""GPT-2: fused QKV stored as Conv1D, learned positions, pre-LN blocks.

Layout, from transformers' GPT2LMHeadModel: `transformer.wte` (tokens), `transformer.wpe`
(positions), per block `transformer.h.N.ln_1`, `attn.c_attn` (q, k and v fused),
`attn.c_proj` (O), `ln_2`, `mlp.c_fc` (up), `mlp.c_proj` (down), then `transformer.ln_f`;
`lm_head` is tied to `wte` and not stored. Conv1D stores its weight as (in, out), so every
projection is read transposed, giving (out, in) like nn.Linear; `c_attn` is (d_model,
3·d_model) and its columns are [q | k | v]. Old checkpoints also store the causal-mask
buffers `attn.bias` and `attn.masked_bias`, which are listed as unclaimed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
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
from terrain.anatomy.config_fields import optional_int, require_int
from terrain.anatomy.registry import register

_L = r"h\.(?P<layer>\d+)\."
_WB = r"\.(weight|bias)"
_STACK = "decoder"
# Conv1D weights: read transposed.
_CONV1D = {"qkv", "o", "mlp_up", "mlp_down"}

RULES = (
    rule(r"wte\.weight", "embeddings", "embed_tokens"),
    rule(r"wpe\.weight", "embeddings", "embed_positions"),
    rule(_L + r"ln_1" + _WB, _STACK, "norm_attn"),
    rule(_L + r"attn\.c_attn" + _WB, _STACK, "qkv"),
    rule(_L + r"attn\.c_proj" + _WB, _STACK, "o"),
    rule(_L + r"ln_2" + _WB, _STACK, "norm_mlp"),
    rule(_L + r"mlp\.c_fc" + _WB, _STACK, "mlp_up"),
    rule(_L + r"mlp\.c_proj" + _WB, _STACK, "mlp_down"),
    rule(r"ln_f" + _WB, _STACK, "norm_final"),
    rule(r"lm_head\.weight", "head", "lm_head"),
)
SKIP = (
    unclaimed(
        _L + r"attn\.(bias|masked_bias)",
        "causal-mask buffer saved by old GPT-2 checkpoints, not a parameter",
    ),
)


@register("gpt2", model_types=("gpt2",))
def build(source: TensorSource, config: Mapping[str, Any]) -> Anatomy:
    name = source.name
    shapes = source.tensor_shapes()
    stored, left_out = classify(name, "gpt2", shapes, RULES, SKIP, prefixes=("transformer.",))
    roles: list[TensorRole] = []
    for r in stored:
        if r.role == "qkv":
            roles += split_equal(
                name,
                shapes,
                r,
                ("q", "k", "v"),
                transpose=r.kind == "weight",
                what="GPT-2 c_attn holds q, k, v side by side: (d_model, 3·d_model)",
            )
        else:
            roles.append(replace(r, transpose=r.role in _CONV1D and r.kind == "weight"))
    d_model = require_int(name, config, "n_embd")
    n_heads = require_int(name, config, "n_head")
    d_ff = optional_int(name, config, "n_inner", 4 * d_model)
    dims = Dimensions(
        d_model=d_model,
        n_heads=n_heads,
        d_head=d_model // n_heads,
        d_ff=d_ff,
        vocab_size=require_int(name, config, "vocab_size"),
        layers={_STACK: require_int(name, config, "n_layer")},
    )
    for role in ("q", "k", "v", "o", "mlp_up", "mlp_down", "norm_attn", "norm_mlp"):
        check_layer_count(name, roles, _STACK, role, dims.layers[_STACK])
    d = d_model
    check_shapes(
        name,
        "gpt2",
        shapes,
        roles,
        {
            "q": (d, d),
            "k": (d, d),
            "v": (d, d),
            "o": (d, d),
            "mlp_up": (d_ff, d),
            "mlp_down": (d, d_ff),
            "norm_attn": (d,),
            "norm_mlp": (d,),
            "norm_final": (d,),
            "embed_tokens": (dims.vocab_size, d),
            "embed_positions": (require_int(name, config, "n_positions"), d),
            "lm_head": (dims.vocab_size, d),
        },
    )
    return Anatomy("gpt2", source, dims, tuple(roles), left_out)
