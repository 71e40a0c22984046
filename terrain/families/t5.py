"""T5 v1.0 (ReLU MLP `wi`/`wo`) and T5 v1.1 / UMT5 / mT5 (gated MLP `wi_0` gate, `wi_1` up).

Layout, from transformers' T5Model: `shared` (token embedding, tied to the stacks'
`embed_tokens`), per block `{encoder,decoder}.block.N.layer.0.SelfAttention.{q,k,v,o}`,
block 0 alone holds `relative_attention_bias` (buckets x heads), `layer.0.layer_norm`
(RMS-style, gain only); the decoder's `layer.1` is `EncDecAttention` (cross-attention)
and its MLP moves to `layer.2`. `final_layer_norm` closes each stack; `lm_head` is
present when untied (released v1.1 checkpoints). transformers 5 ties it to `shared` for
every T5 (T5Config forces tie_word_embeddings=True and keeps the v1.1 flag as
`scale_decoder_outputs`), so replicas it builds store none. UMT5 (and MT5) share this
layout; UMT5 holds a relative_attention_bias in every block, not only block 0.

Symmetries, from T5Block. Attention: q, k, v, o are bias-free nn.Linear; scores are q·k
with no 1/√d scaling, plus the relative position bias (a per-head table indexed by
bucketed offsets: added to the scores, independent of q and k) and the mask. So the Q/K
gauge is the full GL(d_kv) per head, for self-attention and for the decoder's
cross-attention (q from the decoder, k and v from the encoder's output), and V/O likewise.
MLP: `wi` → ReLU → `wo` (v1.0): permutations and positive scalings; `wi_0` (gate) → GELU,
times `wi_1` (linear branch) → `wo` (v1.1 gated-gelu): permutations and nonzero scalings
of the linear branch. Residual: pre-norm with T5LayerNorm = g ⊙ h / √(mean h² + eps), an
RMS norm without mean subtraction, so the stream may be rotated after folding the gains:
encoder and decoder share the token table, so one Q serves both stacks; the encoder's
final norm is read by every decoder cross-attention's k and v, the decoder's final norm by
the LM head. With a tied head (t5-small) the folded head differs from the rotated table:
the transformed weights untie them (the function is unchanged).

Reference, from T5Stack and T5Block: h = x + O·attn(rms(x)), scores q·kᵀ unscaled plus
table[bucket(key − query)] (block 0's, bidirectional buckets in the encoder, causal in the
decoder), padded (encoder) or future (decoder) keys masked; the decoder adds
h + O_x·attn(q of rms(h), k and v of the encoder output, no bias); MLP h + W_o relu(W_i
rms(h)), or gated W_o (act(W_i0 rms(h)) ⊙ W_i1 rms(h)). Embeddings: the shared table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from terrain import family
from terrain.anatomy import Anatomy, Dimensions, Rule, TensorSource, classify, rule
from terrain.anatomy.config_fields import require_int
from terrain.anatomy.shapes import check_layer_count, check_shape
from terrain.reference import ops
from terrain.reference.family import Block, Context, FamilyReference, find, read
from terrain.symmetry.catalogue import (
    attention_layout,
    layer_indices,
    mlp_layout,
    one,
    output_head,
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
from terrain.tracing import NotPredictedError, config_int

MODEL_TYPES = ("t5", "umt5", "mt5")
_MLP_ROLE = {"wi": "mlp_up", "wi_0": "mlp_gate", "wi_1": "mlp_up", "wo": "mlp_down"}


def _stack_rules(stack: str, mlp_sub: int) -> list[Rule]:
    block = stack + r"\.block\.(?P<layer>\d+)\.layer\."
    rules = [
        rule(block + r"0\.SelfAttention\.(?P<role>[qkvo])\.weight", stack, lambda m: m["role"]),
        rule(block + r"0\.SelfAttention\.relative_attention_bias\.weight", stack, "position_bias"),
        rule(block + r"0\.layer_norm\.weight", stack, "norm_attn"),
        rule(
            block + rf"{mlp_sub}\.DenseReluDense\.(?P<w>wi|wi_0|wi_1|wo)\.weight",
            stack,
            lambda m: _MLP_ROLE[m["w"]],
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


# Symmetries ------------------------------------------------------------------------------


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
            block = mlp_layout(anatomy, stack, i, act)
            mlp.append(block)
            norms.append(NormSite(_gain(anatomy, stack, "norm_mlp", i), block.readers))
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


# Reference -------------------------------------------------------------------------------


def _eps(ctx: Context) -> float:
    return float(ctx.config.get("layer_norm_epsilon", 1e-6))


def _stacks(anatomy: Anatomy) -> list[str]:
    return [s for s in ("encoder", "decoder") if anatomy.layers(s, "q")]


def embeddings(anatomy: Anatomy, stack: str, ctx: Context) -> torch.Tensor:
    ids = ctx.inputs["input_ids" if stack == "encoder" else "decoder_input_ids"]
    own = find(anatomy, stack, "embed_tokens", None)
    table = ctx.read(anatomy, own or anatomy.token_embedding())
    return ops.embed(ids, table)


def _position_bias(anatomy: Anatomy, stack: str, layer: int, n: int, ctx: Context) -> torch.Tensor:
    own = find(anatomy, stack, "position_bias", layer)  # UMT5: every block has its table
    entry = own or find(anatomy, stack, "position_bias", 0)
    if entry is None:
        raise ValueError(f"model {anatomy.model_name!r}: no {stack} relative position bias")
    return ops.t5_position_bias(
        ctx.read(anatomy, entry),
        n,
        n,
        bidirectional=stack == "encoder",
        num_buckets=int(ctx.config.get("relative_attention_num_buckets", 32)),
        max_distance=int(ctx.config.get("relative_attention_max_distance", 128)),
    )


def block(anatomy: Anatomy, b: Block, x: torch.Tensor, ctx: Context) -> torch.Tensor:
    s, i, d_head = b.stack, b.layer, anatomy.dims.d_head

    def w(role: str) -> torch.Tensor:
        return read(anatomy, ctx, s, role, i)

    def rms(role: str, h: torch.Tensor) -> torch.Tensor:
        return ops.rms_norm(h, w(role), _eps(ctx))

    def attend(q_in: torch.Tensor, kv_in: torch.Tensor, roles: str, **kw: object) -> torch.Tensor:
        q, k, v = (
            ops.split_heads(ops.linear(src, w(prefix)), d_head)
            for prefix, src in zip(
                (roles + "q", roles + "k", roles + "v"), (q_in, kv_in, kv_in), strict=True
            )
        )
        a = ops.attention(q, k, v, scaling=1.0, **kw)  # type: ignore[arg-type]
        return ops.linear(ops.merge_heads(a), w(roles + "o"))

    n = x.shape[1]
    if s == "encoder":
        allowed = ops.padding_mask(ctx.inputs["attention_mask"])
    else:
        allowed = ops.causal_mask(n, x.device)
    normed = rms("norm_attn", x)
    h = x + attend(normed, normed, "", allowed=allowed, bias=_position_bias(anatomy, s, i, n, ctx))
    if s == "decoder":
        encoded = ctx.output.encoder_last_hidden_state
        enc_mask = ops.padding_mask(ctx.inputs["attention_mask"])
        h = h + attend(rms("norm_cross", h), encoded, "x", allowed=enc_mask)
    normed = rms("norm_mlp", h)
    act = activation(ctx.config)
    if find(anatomy, s, "mlp_gate", i) is not None:
        inner = ops.activation(act, ops.linear(normed, w("mlp_gate"))) * ops.linear(
            normed, w("mlp_up")
        )
    else:
        inner = ops.activation(act, ops.linear(normed, w("mlp_up")))
    return h + ops.linear(inner, w("mlp_down"))


# Call census -----------------------------------------------------------------------------


def census(config: Mapping[str, Any], architecture: str) -> dict[str, int]:
    """T5: each stack looks up its tokens once; the relative position bias table (an
    Embedding) is read once per stack, by block 0's self-attention, and its result reused;
    pre-norm RMS before each sublayer plus a final norm per stack. Encoder blocks: q k v o
    and the MLP's Linears; decoder blocks add the cross-attention's q k v o. A gated MLP
    (`gated-*`) has two input Linears. The LM head is one Linear."""
    L_enc = config_int(config, "num_layers")
    L_dec = config_int(config, "num_decoder_layers", L_enc)
    gated = str(config.get("feed_forward_proj", "relu")).startswith("gated-")
    mlp = 3 if gated else 2
    stacks = {
        "T5ForConditionalGeneration": (True, True, 1),
        "T5Model": (True, True, 0),
        "T5EncoderModel": (True, False, 0),
        "MT5ForConditionalGeneration": (True, True, 1),
    }
    if architecture not in stacks:
        raise NotPredictedError(f"no census prediction for the T5 architecture {architecture!r}")
    has_enc, has_dec, head = stacks[architecture]
    embed = 2 * has_enc + 2 * has_dec
    norm = (2 * L_enc + 1) * has_enc + (3 * L_dec + 1) * has_dec
    linear = (4 + mlp) * L_enc * has_enc + (8 + mlp) * L_dec * has_dec
    act = L_enc * has_enc + L_dec * has_dec
    return {"embedding": embed, "norm": norm, "linear": linear + head, "activation": act}


FAMILY = family.register(
    family.Family(
        name="t5",
        model_types=MODEL_TYPES,
        anatomy=build,
        norms=family.Norms(
            "pre-norm RMS (T5LayerNorm: gain only, no mean, no bias) before each sublayer "
            "(norm_attn, the decoder's norm_cross, norm_mlp), and a final norm per stack"
        ),
        heads=family.Absent(
            "every stack has the config's heads: the anatomy's dimensions give them"
        ),
        stack_counts=family.per_type(
            MODEL_TYPES,
            {
                "encoder": family.StackCount(None, "num_layers"),
                "decoder": family.StackCount(None, "num_decoder_layers"),
            },
        ),
        symmetry=describe,
        reference=FamilyReference(_stacks, block, embeddings),
        census={
            "t5": census,
            "mt5": census,
            "umt5": family.Absent(
                "not written: UMT5 computes a relative position bias in every block (T5 in "
                "block 0 only), and no shipped config checks a prediction of it"
            ),
        },
        text=family.per_type(
            MODEL_TYPES,
            family.TextConvention(
                "the encoder (get_encoder()), as the research read T5", prompt="summarize: {}"
            ),
        ),
        module=family.TransformersModule(),
    )
)
