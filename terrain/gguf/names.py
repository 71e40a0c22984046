"""GGUF tensor names -> Hugging Face names, per architecture, with a reason for every leftover.

The GGUF side of every name comes from the gguf package's own `TensorNameMap` (the table
llama.cpp's converter maps with), asked for each name transformers gives the module; only
the list of transformers names is written here. So the exposed names are the ones
`save_pretrained` writes, and terrain's anatomy adapters (llama.py, qwen3.py) read them
unchanged. A GGUF tensor with no transformers counterpart is never exposed under a guessed
name: it is listed in `unmapped` with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gguf import MODEL_ARCH, MODEL_ARCH_NAMES, get_tensor_name_map


@dataclass(frozen=True)
class Architecture:
    """What terrain knows about one GGUF `general.architecture`."""

    gguf_name: str  # general.architecture, e.g. "llama"
    model_type: str  # transformers' config model_type
    hf_class: str  # the ...ForCausalLM class transformers builds
    qk_permuted: bool  # the converter reorders Q/K rows (terrain/gguf/rope_layout.py)
    layer_modules: tuple[str, ...]  # per-layer module names, after "model.layers.N."

    @property
    def arch(self) -> MODEL_ARCH:
        return next(a for a, name in MODEL_ARCH_NAMES.items() if name == self.gguf_name)


_DECODER = (
    "input_layernorm",
    "post_attention_layernorm",
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)
_GLOBAL_MODULES = ("model.embed_tokens", "model.norm", "lm_head")

ARCHITECTURES: dict[str, Architecture] = {
    a.gguf_name: a
    for a in (
        Architecture("llama", "llama", "LlamaForCausalLM", True, _DECODER),
        Architecture("qwen2", "qwen2", "Qwen2ForCausalLM", False, _DECODER),
        Architecture(
            "qwen3",
            "qwen3",
            "Qwen3ForCausalLM",
            False,
            (*_DECODER, "self_attn.q_norm", "self_attn.k_norm"),
        ),
    )
}

# GGUF tensors that exist for llama.cpp only, and why terrain leaves them out.
KNOWN_EXTRAS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"rope_freqs\.weight"),
        "per-frequency RoPE factors llama.cpp precomputes (Llama 3 rope scaling); not a "
        "transformers weight, and the config read from GGUF does not carry the scaling",
    ),
    (
        re.compile(r"blk\.\d+\.attn_rot_embd\.weight"),
        "rotary frequency buffer (inv_freq) of old checkpoints; recomputed from the config",
    ),
)


def hf_names(arch: Architecture, n_layers: int) -> list[str]:
    """Every tensor name transformers could give a model of this architecture."""
    modules = [*_GLOBAL_MODULES]
    modules += [f"model.layers.{i}.{m}" for i in range(n_layers) for m in arch.layer_modules]
    return [f"{m}.{kind}" for m in modules for kind in ("weight", "bias")]


@dataclass(frozen=True)
class NameMapping:
    """The result of mapping one file's tensors: HF name -> GGUF name, and the leftovers."""

    to_gguf: Mapping[str, str]
    unmapped: Mapping[str, str]  # GGUF name -> reason


def map_names(arch: Architecture, n_layers: int, gguf_tensors: Iterable[str]) -> NameMapping:
    """Map each GGUF tensor to its transformers name, or list it with the reason it has none."""
    table = get_tensor_name_map(arch.arch, n_layers)
    from_gguf: dict[str, str] = {}
    for hf in hf_names(arch, n_layers):
        gguf_name = table.get_name(hf, try_suffixes=(".weight", ".bias"))
        if gguf_name is not None:
            from_gguf.setdefault(gguf_name, hf)
    to_gguf: dict[str, str] = {}
    unmapped: dict[str, str] = {}
    for name in gguf_tensors:
        hf_name = from_gguf.get(name)
        if hf_name is not None:
            to_gguf[hf_name] = name
            continue
        reason = next((why for pattern, why in KNOWN_EXTRAS if pattern.fullmatch(name)), None)
        unmapped[name] = reason or (
            f"no transformers counterpart in terrain's {arch.gguf_name} mapping "
            f"(not read; layers 0..{n_layers - 1} per the metadata)"
        )
    return NameMapping(to_gguf, unmapped)


def gguf_name_for(arch: Architecture, n_layers: int, hf_name: str) -> str | None:
    """The GGUF name llama.cpp's converter writes for a transformers tensor name."""
    return get_tensor_name_map(arch.arch, n_layers).get_name(
        hf_name, try_suffixes=(".weight", ".bias")
    )
