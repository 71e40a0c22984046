"""Text through a checkpoint: batched, padding-masked mean-pooled representations and
per-layer hidden states, with a cache keyed by the checkpoint's fingerprint.

Which stack. Encoder-decoder models (T5) are read through their encoder, as the research
did; encoder-only models through the module itself; decoder-only causal LMs (SmolLM2)
through their base model, without the LM head (its hidden states after the final norm,
each position seeing only itself and the tokens before it); a model whose config has a
text sub-model (CLIP) through that. Models without a tokenizer (vision models,
random-init replicas) and model_types whose family declares no text convention (DINOv2,
CLIP's vision tower) are not applicable: `NotApplicableError` says why.

Prompt. Each family's text convention (`Family.text`, terrain/families/) gives the prompt
that wraps every text: T5-style models get `summarize: {text}` (the research's input for
definitions), every other model the plain text (`{text}`), as does a model_type no family
reads.

Pooling. The representation of a text is the mean of the last hidden states over its real
tokens, special tokens included ([CLS]/[SEP], </s>): exactly the positions where the
attention mask is 1, so padding never enters it and a text's vector does not depend on the
batch it was encoded in (up to float rounding). Texts are tokenised once, sorted by length
and batched, so that a batch pads to nearly its own length.

Cache. Pooled vectors are kept by terrain/representation_cache.py (memory, and .npy
files when a directory is given), keyed by fingerprint, dtype and token ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from terrain.errors import TerrainError
from terrain.family import Absent, family_of_type
from terrain.representation_cache import RepresentationCache, cache_key, default_cache

__all__ = [
    "LayerStates",
    "NotApplicableError",
    "RepresentationCache",
    "default_cache",
    "encode_for",
    "encode_texts",
    "layer_states",
    "masked_mean",
    "prompt_for",
    "require_tokenizer",
    "single_token_id",
    "text_stack",
    "tokenize",
]

DEFAULT_BATCH = 64
DEFAULT_MAX_LENGTH = 128


class NotApplicableError(TerrainError):
    """The property needs something the model does not have (a tokenizer, a text stack)."""


def prompt_for(config: Mapping[str, Any]) -> str:
    """The prompt template of a checkpoint's family (its text convention); the plain text
    for a model_type no family reads."""
    model_type = str(config.get("model_type", ""))
    family = family_of_type(model_type)
    if family is None:
        return "{}"
    text = family.text_for(model_type)
    if isinstance(text, Absent):
        raise NotApplicableError(f"model_type {model_type!r} reads no text: {text.reason}")
    return text.prompt


def require_tokenizer(tokenizer: Any, model_name: str) -> Any:
    if tokenizer is None:
        raise NotApplicableError(
            f"model {model_name!r} has no tokenizer (a vision model or a random-init "
            "replica); text properties need one"
        )
    return tokenizer


def single_token_id(tokenizer: Any, word: str) -> int | None:
    """The id of `word` when the tokenizer makes one token of it (no special tokens), else None.

    A SentencePiece word-start marker that decodes to nothing (T5's bare "▁" before a
    digit) is not counted as a token.
    """
    ids = [int(i) for i in tokenizer.encode(word, add_special_tokens=False)]
    if len(ids) > 1:
        ids = [i for i in ids if tokenizer.decode([i]).strip()]
    return ids[0] if len(ids) == 1 else None


def text_stack(module: Any, model_name: str = "model") -> Any:
    """The part of `module` that maps input_ids to hidden states."""
    config = getattr(module, "config", None)
    model_type = str(getattr(config, "model_type", ""))
    family = family_of_type(model_type)
    if family is not None and isinstance(family.text_for(model_type), Absent):
        raise NotApplicableError(f"model {model_name!r} ({model_type}) has no text stack")
    if getattr(config, "is_encoder_decoder", False) and hasattr(module, "get_encoder"):
        return module.get_encoder()
    text_model = getattr(module, "text_model", None)
    if text_model is not None:
        return text_model
    # A causal LM's head maps hidden states to logits: its base model (transformers'
    # `base_model`, e.g. LlamaModel) returns the final-norm hidden states the text
    # properties pool, by the same masked mean over tokens as an encoder's.
    base = getattr(module, "base_model", None)
    return base if base is not None else module


def tokenize(tokenizer: Any, texts: Sequence[str], *, max_length: int) -> list[list[int]]:
    """Token ids of each text, special tokens added, truncated to `max_length`, unpadded."""
    if not texts:
        return []
    ids = tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=max_length)
    return [list(map(int, row)) for row in ids["input_ids"]]


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of hidden (B, T, D) over the positions where mask (B, T) is nonzero, in float32.

    Padded positions are excluded whatever they hold (also NaN or inf): they are selected
    away, not multiplied by zero. A row with no real token gives NaN.
    """
    if hidden.ndim != 3 or mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"hidden must be (B, T, D) and mask (B, T), got {tuple(hidden.shape)} and "
            f"{tuple(mask.shape)}"
        )
    keep = mask.to(torch.bool)
    h = torch.where(keep[..., None], hidden.float(), 0.0)
    counts = keep.sum(dim=1, keepdim=True).float()
    return h.sum(dim=1) / counts


def _pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def _pad_id(tokenizer: Any) -> int:
    for attr in ("pad_token_id", "eos_token_id", "unk_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return 0  # masked out anyway


def _device_and_dtype(stack: Any) -> tuple[torch.device, torch.dtype]:
    p = next(iter(stack.parameters()))
    return p.device, p.dtype


def _forward(stack: Any, ids: torch.Tensor, mask: torch.Tensor, *, all_layers: bool) -> Any:
    try:
        return stack(
            input_ids=ids, attention_mask=mask, output_hidden_states=all_layers, return_dict=True
        )
    except TypeError as e:  # a stack that takes no input_ids (e.g. pixel models)
        raise NotApplicableError(f"the model's forward does not take text input: {e}") from None


def _last_hidden(out: Any) -> torch.Tensor:
    last = getattr(out, "last_hidden_state", None)
    if last is None:
        states = getattr(out, "hidden_states", None)
        if not states:
            raise NotApplicableError("the model returns no hidden states")
        last = states[-1]
    return torch.as_tensor(last)


def encode_texts(
    module: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    prompt: str = "{}",
    batch_size: int = DEFAULT_BATCH,
    max_length: int = DEFAULT_MAX_LENGTH,
    fingerprint: str | None = None,
    cache: RepresentationCache | None = None,
    model_name: str = "model",
) -> torch.Tensor:
    """(N, D) float32 CPU tensor: the masked mean of the last hidden state of each text.

    `prompt` wraps each text (`prompt.format(text)`). With `fingerprint` and `cache`, the
    vectors are looked up first and stored after (see the module docstring).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    stack = text_stack(module, model_name)
    ids = tokenize(tokenizer, [prompt.format(t) for t in texts], max_length=max_length)
    if not ids:
        return torch.zeros((0, int(getattr(module.config, "hidden_size", 0) or 0)))
    device, dtype = _device_and_dtype(stack)
    key = cache_key(fingerprint, dtype, ids) if fingerprint is not None else None
    if key is not None and cache is not None:
        hit = cache.get(key)
        if hit is not None:
            return hit
    order = np.argsort([-len(r) for r in ids], kind="stable")
    pad_id = _pad_id(tokenizer)
    out: torch.Tensor | None = None
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            batch_ids, mask = _pad([ids[i] for i in chosen], pad_id)
            result = _forward(stack, batch_ids.to(device), mask.to(device), all_layers=False)
            pooled = masked_mean(_last_hidden(result), mask.to(device)).cpu()
            if out is None:
                out = torch.empty((len(ids), pooled.shape[1]), dtype=torch.float32)
            out[torch.as_tensor(chosen, dtype=torch.long)] = pooled
    assert out is not None
    if key is not None and cache is not None:
        cache.put(key, out)
    return out


class _Owner(Protocol):
    """What `encode_for` needs of a loaded model (terrain.model.LoadedModel has it)."""

    @property
    def name(self) -> str: ...

    @property
    def checkpoint(self) -> Any: ...

    @property
    def cache_dir(self) -> Path: ...

    def module(self, dtype: str | None = None) -> Any: ...


def encode_for(
    owner: _Owner,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    batch_size: int = DEFAULT_BATCH,
    max_length: int = DEFAULT_MAX_LENGTH,
) -> torch.Tensor:
    """`encode_texts` through a loaded model's module, with its family's prompt, cached on
    disk under its cache dir (`representations/`) by its checkpoint fingerprint.

    `tokenizer` is passed separately so that a random-init null (which has none) reads the
    real model's tokens.
    """
    return encode_texts(
        owner.module(),
        tokenizer,
        texts,
        prompt=prompt_for(owner.checkpoint.config),
        batch_size=batch_size,
        max_length=max_length,
        fingerprint=owner.checkpoint.fingerprint,
        cache=default_cache(Path(owner.cache_dir) / "representations"),
        model_name=owner.name,
    )


@dataclass(frozen=True)
class LayerStates:
    """Hidden states of every real token of a set of texts, per layer.

    states[l] is (T, D) float32: layer l's states of all real tokens (mask 1) of all texts,
    text after text; `text_index` (T,) says which text each row belongs to. Layer 0 is the
    embedding output, layer L the last block's output (transformers' `hidden_states`).
    """

    states: tuple[torch.Tensor, ...]
    text_index: torch.Tensor
    n_texts: int

    @property
    def n_layers(self) -> int:
        return len(self.states)


def layer_states(
    module: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    batch_size: int = DEFAULT_BATCH,
    model_name: str = "model",
) -> LayerStates:
    """All layers' hidden states of the real tokens of `texts` (no prompt; padding dropped)."""
    stack = text_stack(module, model_name)
    ids = tokenize(tokenizer, texts, max_length=max_length)
    if not ids:
        raise ValueError("layer_states needs at least one text")
    device, _ = _device_and_dtype(stack)
    per_layer: list[list[torch.Tensor]] = []
    index: list[torch.Tensor] = []
    pad_id = _pad_id(tokenizer)
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            batch_ids, mask = _pad(ids[start : start + batch_size], pad_id)
            out = _forward(stack, batch_ids.to(device), mask.to(device), all_layers=True)
            states = getattr(out, "hidden_states", None)
            if not states:
                raise NotApplicableError(f"model {model_name!r} returns no per-layer hidden states")
            keep = mask.to(torch.bool)
            if not per_layer:
                per_layer = [[] for _ in states]
            for layer, h in enumerate(states):
                per_layer[layer].append(h.float().cpu()[keep])
            rows = torch.arange(start, start + len(batch_ids))[:, None].expand_as(keep)
            index.append(rows[keep])
    return LayerStates(
        states=tuple(torch.cat(chunks) for chunks in per_layer),
        text_index=torch.cat(index),
        n_texts=len(ids),
    )
