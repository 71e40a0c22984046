"""Weight tying of the token embedding, its per-stack copies and the LM head.

Each table is read once and reduced to a digest (BLAKE2b of its float32 bytes); two tables
are identical when their digests are. The expectation comes from the config:

- per-stack copies of the token table (T5's encoder/decoder `embed_tokens` beside
  `shared`) are the same module in every family here: identical when stored, and absent
  when the saver dropped the duplicate;
- the LM head is tied when config.json says `tie_word_embeddings` (top level, else in
  `text_config`), else the transformers class default for the model type (GPT-2, BERT,
  T5: tied; Llama, Qwen3: untied). A tied head must be absent or identical; an untied
  one must be stored and differ. An absent untied head is a defect only when the
  architecture has an LM head (…ForCausalLM, …LMHeadModel, …ForConditionalGeneration,
  …ForMaskedLM, …ForPreTraining); a headless checkpoint (BertModel) has nothing to tie.

transformers 5 ties every T5's head whatever config.json says (T5Config forces
tie_word_embeddings = True); where that differs from config.json, `loader_ties` records it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

LM_HEAD_ARCHITECTURES = (
    "ForCausalLM",
    "LMHeadModel",
    "ForConditionalGeneration",
    "ForMaskedLM",
    "ForPreTraining",
)


def tensor_digest(t: torch.Tensor) -> str:
    """BLAKE2b of the tensor's float32 values (shape included)."""
    return chunked_digest(tuple(t.shape), [t])


def chunked_digest(shape: tuple[int, ...], chunks: Iterable[torch.Tensor]) -> str:
    """`tensor_digest` of a tensor given as consecutive row chunks (the same bytes hashed in
    the same order, so the digest equals the whole tensor's)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(tuple(shape)).encode())
    for c in chunks:
        h.update(c.detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class TiePair:
    table: str  # e.g. "decoder.embed_tokens", "head.lm_head"
    reference: str  # the primary token table, e.g. "embeddings.embed_tokens"
    expected_tied: bool
    status: str  # identical | different | absent
    consistent: bool
    reason: str

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class TyingReport:
    reference: str | None
    tie_word_embeddings: bool | None  # as config.json (or the class default) says
    loader_ties: bool | None  # as transformers reads the config
    has_lm_head: bool
    pairs: tuple[TiePair, ...]

    @property
    def consistent_fraction(self) -> float:
        if not self.pairs:
            return float("nan")
        return sum(p.consistent for p in self.pairs) / len(self.pairs)

    def as_dict(self) -> dict[str, object]:
        return {
            "reference": self.reference,
            "tie_word_embeddings": self.tie_word_embeddings,
            "loader_ties": self.loader_ties,
            "has_lm_head": self.has_lm_head,
            "pairs": [p.as_dict() for p in self.pairs],
        }


def declared_tie(config: Mapping[str, Any]) -> bool | None:
    """config.json's tie_word_embeddings (top level, else text_config), else None."""
    for cfg in (config, config.get("text_config")):
        if isinstance(cfg, Mapping) and isinstance(cfg.get("tie_word_embeddings"), bool):
            return bool(cfg["tie_word_embeddings"])
    return None


def loader_tie(config: Mapping[str, Any]) -> bool | None:
    """tie_word_embeddings as transformers' config class reads config.json (None: unknown)."""
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        return None
    try:
        import transformers

        skip = ("model_type", "transformers_version", "torch_dtype", "dtype")
        kwargs = {k: v for k, v in config.items() if k not in skip and not k.startswith("_")}
        cfg = transformers.AutoConfig.for_model(model_type, **kwargs)
    except (ValueError, KeyError, TypeError):
        return None
    text = getattr(cfg, "get_text_config", None)
    tied = getattr(text() if callable(text) else cfg, "tie_word_embeddings", None)
    return tied if isinstance(tied, bool) else None


def has_lm_head(config: Mapping[str, Any]) -> bool:
    names = config.get("architectures") or []
    return any(str(n).endswith(LM_HEAD_ARCHITECTURES) for n in names)


def tying_report(
    digests: Mapping[str, str],
    *,
    reference: str | None,
    stack_copies: list[str],
    lm_head: str | None,
    config: Mapping[str, Any],
) -> TyingReport:
    """Judge every copy of the token table and the LM head against the reference table.

    `digests` maps "stack.role" labels of the stored tables to their digests (only tables
    that are compared need one: a lone token table has none); `stack_copies` lists the
    other stored token tables; `lm_head` the stored head's label.
    """
    declared = declared_tie(config)
    loader = loader_tie(config)
    tied = declared if declared is not None else loader
    headed = has_lm_head(config) or lm_head is not None
    pairs: list[TiePair] = []
    if reference is None:
        return TyingReport(None, tied, loader, headed, ())
    for label in stack_copies:
        same = digests[label] == digests[reference]
        pairs.append(
            TiePair(
                label,
                reference,
                True,
                "identical" if same else "different",
                same,
                "a stack's token table is the shared table"
                + ("" if same else ": stored copy differs"),
            )
        )
    if lm_head is not None:
        same = digests[lm_head] == digests[reference]
        expected = bool(tied)
        pairs.append(
            TiePair(
                lm_head,
                reference,
                expected,
                "identical" if same else "different",
                same == expected,
                f"config ties the head: {tied}",
            )
        )
    elif headed:
        pairs.append(
            TiePair(
                "head.lm_head",
                reference,
                bool(tied),
                "absent",
                bool(tied),
                "absent, tied to the token table per config"
                if tied
                else "absent, but the config unties the head of this LM architecture",
            )
        )
    return TyingReport(reference, tied, loader, headed, tuple(pairs))
