"""The WordNet study of a model, shared by the WordNet properties (terrain/checks/wordnet.py,
wordnet_stability.py): a seeded sample of noun synsets with its hypernym chains, each
definition encoded by the model and by its null, and the relational alignment of the two on
the same pairs, computed once per model.

Sizes (environment variables, for CI the defaults): TERRAIN_WORDNET_SYNSETS synsets
(default 1000), TERRAIN_WORDNET_PAIRS pairs (default 20000), TERRAIN_STABILITY_SEEDS seeds
of the stability run (default 5; the research used 50), each drawing half of the synsets,
the pairs, half of the hypernym chains and 500 simplices.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from terrain.checks.text import text_module, tokenizer_of
from terrain.errors import ConfigError
from terrain.measures.relational import AlignmentComparison, relational_alignment
from terrain.text_encoding import encode_for
from terrain.wordnet import load_wordnet
from terrain.wordnet_sample import RelationalSample, relational_sample

if TYPE_CHECKING:
    from terrain.model import LoadedModel

SAMPLE_SEED = 0
N_CHAINS = 200
CHAIN_LENGTH = 5


def env_int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ConfigError(f"${name} must be an integer >= {minimum}, got {raw!r}")
    return value


@dataclass(frozen=True)
class Study:
    """The model's and the null's definition vectors over one WordNet sample."""

    wordnet: RelationalSample
    model_vectors: torch.Tensor  # (texts, D): sample rows first, then chain ancestors
    null_vectors: torch.Tensor
    alignment: AlignmentComparison
    n_pairs: int

    @property
    def n_synsets(self) -> int:
        return len(self.wordnet.sample)


def study_of(model: LoadedModel) -> Study:
    """The sample encoded once per model (cached on disk by checkpoint fingerprint)."""
    return model.memo("wordnet_study", lambda: _study(model))


def _study(model: LoadedModel) -> Study:
    tokenizer = tokenizer_of(model)
    text_module(model)
    wn = load_wordnet()
    n_synsets = env_int("TERRAIN_WORDNET_SYNSETS", 1000, 50)
    n_pairs = env_int("TERRAIN_WORDNET_PAIRS", 20_000, 100)
    sample = relational_sample(
        wn, n_synsets, seed=SAMPLE_SEED, n_chains=N_CHAINS, chain_length=CHAIN_LENGTH
    )
    vectors = encode_for(model, tokenizer, sample.texts)
    null_vectors = encode_for(model.null(), tokenizer, sample.texts)
    n = len(sample.sample)
    alignment = relational_alignment(
        vectors[:n], null_vectors[:n], sample.similarities, n_pairs=n_pairs, seed=SAMPLE_SEED
    )
    return Study(sample, vectors, null_vectors, alignment, n_pairs)
