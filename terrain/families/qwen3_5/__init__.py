"""Qwen3.5: a hybrid decoder of gated-delta-net (linear attention) and gated full attention,
with a vision tower (model_type "qwen3_5") or text only ("qwen3_5_text").

A package, as its code does not fit one module: `anatomy` (the tensor rules, roles and
dimensions, and the gains stored as offsets from 1), `symmetry` (the catalogue entry),
`reference` (the reference block, gated delta net included); here the call census and the
declaration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from terrain import family
from terrain.families.decoder import token_embeddings
from terrain.families.qwen3_5.anatomy import GAIN_OFFSET, OFFSET_ROLES, build
from terrain.families.qwen3_5.reference import block
from terrain.families.qwen3_5.symmetry import S, describe
from terrain.families.vit import section_heads
from terrain.reference.family import FamilyReference
from terrain.tracing import config_int, head_calls

MODEL_TYPES = ("qwen3_5", "qwen3_5_text")


def census(config: Mapping[str, Any], architecture: str) -> dict[str, int]:
    """Qwen3.5 on text-only inputs (the vision tower is not called): one token lookup and
    one rotary table; every layer has input_layernorm, post_attention_layernorm and a
    SwiGLU MLP (gate, up, down and one activation). Full-attention layers add q, k, v, o
    and q_norm, k_norm; gated-delta-net layers add in_proj_qkv, in_proj_z, in_proj_b,
    in_proj_a, out_proj and the gated output norm (their causal conv and gate activation
    are functional calls, not module calls). Then the final norm and the LM head."""
    text = config.get("text_config")
    cfg = text if isinstance(text, Mapping) else config
    L = config_int(cfg, "num_hidden_layers")
    types = cfg.get("layer_types")
    if not isinstance(types, list) or len(types) != L:
        interval = config_int(cfg, "full_attention_interval", 4)
        types = [
            "full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(L)
        ]
    full = sum(t == "full_attention" for t in types)
    linear = L - full
    head = head_calls(
        architecture,
        {"Qwen3_5ForConditionalGeneration": 1, "Qwen3_5ForCausalLM": 1, "Qwen3_5Model": 0},
        "Qwen3.5",
    )
    return {
        "embedding": 1,
        "rotary": 1,
        "linear": 7 * full + 8 * linear + head,
        "norm": 4 * full + 3 * linear + 1,
        "activation": L,
    }


FAMILY = family.register(
    family.Family(
        name="qwen3_5",
        model_types=MODEL_TYPES,
        anatomy=build,
        norms=family.Norms(
            "pre-norm RMS (Qwen3_5RMSNorm, x̂·(1 + w): gains stored as offsets from 1) "
            "before every mixer (input_layernorm) and MLP (post_attention_layernorm), on "
            "q and k per head (q_norm, k_norm), and the final norm; the linear-attention "
            "output norm (gated RMS per value head) multiplies by its stored gain; the "
            "vision tower: LayerNorm (norm1, norm2)",
            {(S, role): GAIN_OFFSET for role in OFFSET_ROLES},
        ),
        heads=section_heads,
        stack_counts={
            "qwen3_5": {
                "decoder": family.StackCount("text_config", "num_hidden_layers"),
                "vision": family.StackCount("vision_config", "depth"),
            },
            "qwen3_5_text": family.Absent(
                "not written: text-only checkpoints (Qwen3_5ForCausalLM) are not cut into windows"
            ),
        },
        symmetry=describe,
        reference=FamilyReference(lambda anatomy: [S], block, token_embeddings, locator="mlp_down"),
        census=family.per_type(MODEL_TYPES, census),
        text=family.per_type(
            MODEL_TYPES,
            family.TextConvention(
                "the module itself, on text-only inputs (the vision tower is idle)"
            ),
        ),
        module=family.TransformersModule(),
    )
)
