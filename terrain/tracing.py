"""What one forward of the library module does: fixed inputs, module-call census, block I/O.

- `forward_inputs`: seeded, short inputs for a config (token ids with a padding mask;
  decoder ids for encoder-decoders; pixels for vision towers).
- `call_census`: calls per module type in one forward, through forward hooks on every
  leaf module (a module without children: Linear, norms, activations, Embedding, rotary
  tables). Containers (layers, attention blocks) are not counted, as in the seed trace.
- `predicted_census`: what the config alone says that census must be, per family and
  architecture, written from the model code (never from a trace).
- `capture_blocks`: the input and output of named submodules in one forward.
- `resolve_name`: a checkpoint tensor name in the module's parameter names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from terrain.errors import TerrainError

# Leaf modules that are the identity in eval mode: left out of the census, because how
# many dropout sites a module has is an implementation detail, not an architectural fact.
NO_OP_TYPES = frozenset({"Dropout", "Identity"})
DEFAULT_SEQ_LEN = 8


def resolve_name(tensor: str, names: Iterable[str], saved: Mapping[str, str] | None = None) -> str:
    """The module parameter name of a checkpoint tensor name.

    `saved`: checkpoint name -> module name where the library renames weights on load
    (see `saved_names`). Otherwise the name itself, or the one module name that differs
    from it by a dotted prefix (`bert.encoder...` for a BertModel, or the reverse);
    anything else is a KeyError naming the tensor.
    """
    pool = list(names)
    if saved and tensor in saved:
        return saved[tensor]
    if tensor in pool:
        return tensor
    found = [n for n in pool if n.endswith("." + tensor) or tensor.endswith("." + n)]
    if len(found) == 1:
        return found[0]
    what = "several module parameters" if found else "no module parameter"
    raise KeyError(f"tensor {tensor!r} matches {what}{': ' + ', '.join(found) if found else ''}")


def saved_names(module: torch.nn.Module) -> dict[str, str]:
    """Checkpoint tensor name -> module parameter name, for modules whose weights transformers
    renames on load (e.g. DINOv2's `attention.attention.query` is `attention.q_proj`).

    Uses transformers' own reversal of its load-time conversion; a tensor the conversion
    renames keeps its identity, so names are matched by tensor identity. Empty when this
    transformers has no such conversion.
    """
    try:
        from transformers.core_model_loading import revert_weight_conversion
    except ImportError:
        return {}
    state = {n: p.detach() for n, p in module.named_parameters()}
    by_id = {id(t): n for n, t in state.items()}
    try:
        reverted = revert_weight_conversion(module, dict(state))  # type: ignore[arg-type]
    except (AttributeError, KeyError, TypeError, ValueError):
        return {}
    return {k: by_id[id(t)] for k, t in reverted.items() if id(t) in by_id and k != by_id[id(t)]}


# Inputs ---------------------------------------------------------------------------


def _first_int(config: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def forward_inputs(
    config: Mapping[str, Any],
    *,
    seq_len: int = DEFAULT_SEQ_LEN,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> dict[str, Any]:
    """A batch of two seeded inputs; the second row's last quarter is padding (mask 0).

    Token ids avoid the special ids below 4 (pad, eos, unk, bos in the shipped configs).
    Encoder-decoders also get decoder ids (half the length); caches are switched off.
    """
    gen = torch.Generator().manual_seed(seed)
    if "image_size" in config and _first_int(config, "vocab_size") is None:
        size = int(config["image_size"])
        channels = _first_int(config, "num_channels") or 3
        pixels = torch.randn(2, channels, size, size, generator=gen, dtype=torch.float64)
        return {"pixel_values": pixels.to(device=device, dtype=dtype)}
    vocab = _first_int(config, "vocab_size")
    text = config.get("text_config")
    if vocab is None and isinstance(text, Mapping):  # a VLM: text-only inputs
        vocab = _first_int(text, "vocab_size")
    if vocab is None:
        raise ValueError("config has neither vocab_size nor image_size: cannot make inputs")
    ids = torch.randint(4, vocab, (2, seq_len), generator=gen)
    mask = torch.ones(2, seq_len, dtype=torch.long)
    mask[1, seq_len - max(1, seq_len // 4) :] = 0
    inputs: dict[str, Any] = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
    if config.get("is_encoder_decoder"):
        dec_len = max(2, seq_len // 2)
        inputs["decoder_input_ids"] = torch.randint(4, vocab, (2, dec_len), generator=gen).to(
            device
        )
    # No cache: one forward needs none, and a window of a hybrid stack holding only
    # linear-attention blocks has no attention layer to size one by.
    if (
        config.get("is_encoder_decoder")
        or "use_cache" in config
        or (isinstance(text, Mapping) and "use_cache" in text)
    ):
        inputs["use_cache"] = False
    return inputs


def primary_output(output: Any) -> torch.Tensor:
    """The first tensor of a module's output: logits for LM heads, else the last hidden state."""
    if isinstance(output, torch.Tensor):
        return output
    first = output[0]
    if not isinstance(first, torch.Tensor):
        raise TypeError(f"the module's first output is a {type(first).__name__}, not a tensor")
    return first


# Census ---------------------------------------------------------------------------


def _leaves(module: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in module.modules() if next(m.children(), None) is None]


def call_census(module: torch.nn.Module, inputs: Mapping[str, Any]) -> Counter[str]:
    """Calls per leaf-module type name in one forward (no-op types included)."""
    calls: Counter[str] = Counter()

    def hook(mod: torch.nn.Module, args: Any, output: Any) -> None:
        calls[type(mod).__name__] += 1

    handles = [m.register_forward_hook(hook) for m in _leaves(module)]
    try:
        with torch.no_grad():
            module(**inputs)
    finally:
        for h in handles:
            h.remove()
    return calls


_KIND_PATTERNS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("rotary", lambda t: t.endswith("RotaryEmbedding")),
    ("embedding", lambda t: t == "Embedding"),
    ("linear", lambda t: t in ("Linear", "Conv1D")),
    ("conv", lambda t: t in ("Conv2d", "Conv1d")),
    ("norm", lambda t: t.endswith(("LayerNorm", "RMSNorm", "RMSNormGated"))),
    ("layer_scale", lambda t: t.endswith("LayerScale")),
    (
        "activation",
        lambda t: (
            t in ("ReLU", "Tanh", "SiLU", "GELU", "Sigmoid")
            or t.endswith("Activation")
            or t.endswith("GELU")
        ),
    ),
)


def kind_of(type_name: str) -> str:
    """The census kind of a leaf type ('linear', 'norm', ...), or the type name itself."""
    for kind, match in _KIND_PATTERNS:
        if match(type_name):
            return kind
    return type_name


def census_by_kind(calls: Mapping[str, int]) -> dict[str, int]:
    """Calls per kind, no-op types left out."""
    out: Counter[str] = Counter()
    for type_name, n in calls.items():
        if type_name not in NO_OP_TYPES:
            out[kind_of(type_name)] += n
    return dict(sorted(out.items()))


class NotPredictedError(TerrainError):
    """The config's family or architecture has no census prediction (yet)."""


Predictor = Callable[[Mapping[str, Any], str], dict[str, int]]
_PREDICTORS: dict[str, Predictor] = {}


def predicts(*model_types: str) -> Callable[[Predictor], Predictor]:
    """Register a census prediction for config model_types; duplicates are refused."""

    def decorate(fn: Predictor) -> Predictor:
        for t in model_types:
            if t in _PREDICTORS:
                raise ValueError(f"model_type {t!r} already has a census prediction")
            _PREDICTORS[t] = fn
        return fn

    return decorate


def predicted_census(config: Mapping[str, Any]) -> dict[str, int]:
    """Leaf calls per kind in one forward of `forward_inputs(config)`, from the config alone.

    The architecture is config.json's `architectures[0]` (the class the module is built from).
    """
    model_type = str(config.get("model_type"))
    archs = config.get("architectures") or []
    architecture = str(archs[0]) if archs else "AutoModel"
    if model_type not in _PREDICTORS:
        raise NotPredictedError(f"no census prediction for model_type {model_type!r}")
    counts = _PREDICTORS[model_type](config, architecture)
    return dict(sorted((k, v) for k, v in counts.items() if v))


def _int(config: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = config.get(key, default)
    if not isinstance(value, int):
        raise NotPredictedError(f"config field {key!r} is not an integer: {value!r}")
    return value


@predicts("bert")
def _bert(config: Mapping[str, Any], architecture: str) -> dict[str, int]:
    """BertModel: word, position and token-type Embedding; LayerNorm after the embeddings
    and after each sublayer (post-norm); per layer q, k, v, o, up, down Linear and one
    activation; the pooler is one Linear and a Tanh on the first token."""
    L = _int(config, "num_hidden_layers")
    heads = {"BertModel": (1, 0, 1), "BertForMaskedLM": (2, 1, 1)}  # linear, norm, activation
    if architecture not in heads:
        raise NotPredictedError(f"no census prediction for the BERT head {architecture!r}")
    h_lin, h_norm, h_act = heads[architecture]
    return {
        "embedding": 3,
        "norm": 1 + 2 * L + h_norm,
        "linear": 6 * L + h_lin,
        "activation": L + h_act,
    }


@predicts("t5", "mt5")
def _t5(config: Mapping[str, Any], architecture: str) -> dict[str, int]:
    """T5: each stack looks up its tokens once; the relative position bias table (an
    Embedding) is read once per stack, by block 0's self-attention, and its result reused;
    pre-norm RMS before each sublayer plus a final norm per stack. Encoder blocks: q k v o
    and the MLP's Linears; decoder blocks add the cross-attention's q k v o. A gated MLP
    (`gated-*`) has two input Linears. The LM head is one Linear."""
    L_enc = _int(config, "num_layers")
    L_dec = _int(config, "num_decoder_layers", L_enc)
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
    embed = 0
    norm = linear = act = 0
    if has_enc:
        embed += 2
        norm += 2 * L_enc + 1
        linear += (4 + mlp) * L_enc
        act += L_enc
    if has_dec:
        embed += 2
        norm += 3 * L_dec + 1
        linear += (8 + mlp) * L_dec
        act += L_dec
    return {"embedding": embed, "norm": norm, "linear": linear + head, "activation": act}


def _head(architecture: str, heads: Mapping[str, int], family: str) -> int:
    if architecture not in heads:
        raise NotPredictedError(
            f"no census prediction for the {family} architecture {architecture!r}"
        )
    return heads[architecture]


@predicts("llama", "qwen3", "olmo3")
def _llama(config: Mapping[str, Any], architecture: str) -> dict[str, int]:
    """Llama / Qwen3 / OLMo-3: one token lookup; the rotary table computed once per forward
    at the model level (OLMo-3 in transformers 5: once per distinct layer type; the seed's
    older trace shows one); per layer q k v o, gate up down and one SiLU; RMSNorms: two per
    layer (Llama: pre-attention, pre-MLP; OLMo-3: post-attention, post-MLP), plus q_norm and
    k_norm (Qwen3, OLMo-3), plus the final norm; the LM head is one Linear."""
    L = _int(config, "num_hidden_layers")
    model_type = str(config.get("model_type"))
    head = _head(
        architecture,
        {
            "LlamaForCausalLM": 1,
            "Qwen3ForCausalLM": 1,
            "Olmo3ForCausalLM": 1,
            "LlamaModel": 0,
            "Qwen3Model": 0,
            "Olmo3Model": 0,
        },
        model_type,
    )
    qk_norms = 2 if model_type in ("qwen3", "olmo3") else 0
    rotary = 1
    if model_type == "olmo3":
        types = config.get("layer_types") or ["sliding_attention", "full_attention"]
        rotary = len(set(types))
    return {
        "embedding": 1,
        "rotary": rotary,
        "linear": 7 * L + head,
        "norm": (2 + qk_norms) * L + 1,
        "activation": L,
    }


@predicts("gpt2")
def _gpt2(config: Mapping[str, Any], architecture: str) -> dict[str, int]:
    """GPT-2: token and position lookups; per block ln_1, ln_2, c_attn, c_proj, c_fc and the
    MLP's c_proj (Conv1D, counted as linear) and one activation; ln_f; the LM head."""
    L = _int(config, "n_layer")
    head = _head(architecture, {"GPT2LMHeadModel": 1, "GPT2Model": 0}, "gpt2")
    return {"embedding": 2, "norm": 2 * L + 1, "linear": 4 * L + head, "activation": L}


@predicts("dinov2")
def _dinov2(config: Mapping[str, Any], architecture: str) -> dict[str, int]:
    """DINOv2: the patch conv; per layer norm1, norm2, q k v o, two (SwiGLU: three) MLP
    Linears, one activation and two layer scales; the final layernorm."""
    L = _int(config, "num_hidden_layers")
    head = _head(architecture, {"Dinov2Model": 0, "Dinov2ForImageClassification": 1}, "dinov2")
    mlp = 3 if config.get("use_swiglu_ffn") else 2
    return {
        "conv": 1,
        "norm": 2 * L + 1,
        "linear": (4 + mlp) * L + head,
        "activation": L,
        "layer_scale": 2 * L,
    }


@predicts("clip_vision_model")
def _clip_vision(config: Mapping[str, Any], architecture: str) -> dict[str, int]:
    """CLIP vision tower: the patch conv and the position lookup; pre_layrnorm, per layer
    layer_norm1 and 2, q k v out_proj, fc1, fc2 and one activation; post_layernorm
    (applied to the pooled class token); the projection when present."""
    L = _int(config, "num_hidden_layers")
    head = _head(
        architecture, {"CLIPVisionModel": 0, "CLIPVisionModelWithProjection": 1}, "CLIP vision"
    )
    return {
        "conv": 1,
        "embedding": 1,
        "norm": 2 * L + 2,
        "linear": 6 * L + head,
        "activation": L,
    }


@predicts("qwen3_5", "qwen3_5_text")
def _qwen3_5(config: Mapping[str, Any], architecture: str) -> dict[str, int]:
    """Qwen3.5 on text-only inputs (the vision tower is not called): one token lookup and
    one rotary table; every layer has input_layernorm, post_attention_layernorm and a
    SwiGLU MLP (gate, up, down and one activation). Full-attention layers add q, k, v, o
    and q_norm, k_norm; gated-delta-net layers add in_proj_qkv, in_proj_z, in_proj_b,
    in_proj_a, out_proj and the gated output norm (their causal conv and gate activation
    are functional calls, not module calls). Then the final norm and the LM head."""
    text = config.get("text_config")
    cfg = text if isinstance(text, Mapping) else config
    L = _int(cfg, "num_hidden_layers")
    types = cfg.get("layer_types")
    if not isinstance(types, list) or len(types) != L:
        interval = _int(cfg, "full_attention_interval", 4)
        types = [
            "full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(L)
        ]
    full = sum(t == "full_attention" for t in types)
    linear = L - full
    head = _head(
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


# Capturing block inputs and outputs --------------------------------------------------


@dataclass(frozen=True)
class Captured:
    """One call of a submodule: its hidden-state input (first argument) and output."""

    path: str
    hidden_in: torch.Tensor
    hidden_out: torch.Tensor
    kwargs: Mapping[str, Any]


def capture_blocks(
    module: torch.nn.Module, paths: Iterable[str], inputs: Mapping[str, Any]
) -> tuple[dict[str, Captured], Any]:
    """Run one forward; return each path's first call and the module's output."""
    paths = list(paths)
    captured: dict[str, Captured] = {}
    handles = []

    def make_hook(path: str) -> Callable[..., None]:
        def hook(mod: torch.nn.Module, args: Any, kwargs: Any, output: Any) -> None:
            if path in captured:
                return
            hidden = args[0] if args else kwargs["hidden_states"]
            out = output[0] if isinstance(output, tuple | list) else output
            captured[path] = Captured(path, hidden.detach(), out.detach(), dict(kwargs))

        return hook

    for path in paths:
        sub = module.get_submodule(path)
        handles.append(sub.register_forward_hook(make_hook(path), with_kwargs=True))
    try:
        with torch.no_grad():
            output = module(**inputs)
    finally:
        for h in handles:
            h.remove()
    missing = [p for p in paths if p not in captured]
    if missing:
        raise RuntimeError(f"submodule(s) {missing} were not called in the forward")
    return captured, output
