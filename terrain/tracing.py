"""What one forward of the library module does: fixed inputs, module-call census, block I/O.

- `forward_inputs`: seeded, short inputs for a config (token ids with a padding mask;
  decoder ids for encoder-decoders; pixels for vision towers).
- `call_census`: calls per module type in one forward, through forward hooks on every
  leaf module (a module without children: Linear, norms, activations, Embedding, rotary
  tables). Containers (layers, attention blocks) are not counted, as in the seed trace.
- `predicted_census`: what the config alone says that census must be, per family and
  architecture, written from the model code (never from a trace): each family declares
  its prediction (terrain/families/); `config_int` and `head_calls` help write one.
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
from terrain.family import family_of_type, require

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


def predicted_census(config: Mapping[str, Any]) -> dict[str, int]:
    """Leaf calls per kind in one forward of `forward_inputs(config)`, from the config alone:
    the prediction its family declares for its model_type (terrain/families/).

    The architecture is config.json's `architectures[0]` (the class the module is built from).
    """
    model_type = str(config.get("model_type"))
    archs = config.get("architectures") or []
    architecture = str(archs[0]) if archs else "AutoModel"
    family = family_of_type(model_type)
    predict = require(
        None if family is None else family.census_for(model_type),
        NotPredictedError,
        f"no census prediction for model_type {model_type!r}",
    )
    counts = predict(config, architecture)
    return dict(sorted((k, v) for k, v in counts.items() if v))


def config_int(config: Mapping[str, Any], key: str, default: int | None = None) -> int:
    """An integer field a prediction counts with; NotPredictedError when it is not one."""
    value = config.get(key, default)
    if not isinstance(value, int):
        raise NotPredictedError(f"config field {key!r} is not an integer: {value!r}")
    return value


def head_calls(architecture: str, heads: Mapping[str, int], family: str) -> int:
    """Calls of an architecture's task head, from a table of the architectures predicted."""
    if architecture not in heads:
        raise NotPredictedError(
            f"no census prediction for the {family} architecture {architecture!r}"
        )
    return heads[architecture]


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
