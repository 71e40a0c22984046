"""Semantic categories (seed notebook §1): do the token embeddings of related words cluster?

Intra-category mean pairwise cosine of single-token words, minus the mean pairwise cosine
of the whole vocabulary (the research sampled 5000 tokens; here the exact mean over all
rows, from |sum of unit rows|^2). Intervals resample words within each category (count
resamples, terrain/bootstrap.py; pairs of a word with its own copy are left out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from terrain.bootstrap import Interval, percentile_interval, resample_counts
from terrain.measures.representation import mean_pairwise_cosine, unit_rows, weighted_pair_cosine

__all__ = ["SEED_CATEGORIES", "CategoryLift", "CategoryStat", "category_lift"]

SEED_CATEGORIES: Mapping[str, tuple[str, ...]] = {
    # The research's eight categories, verbatim (seed notebook §1); "fish" is in two.
    "animals": (
        "cat", "dog", "bird", "fish", "horse", "mouse", "bear", "wolf", "deer", "fox",
        "lion", "tiger", "snake", "whale", "frog", "rabbit", "monkey", "elephant",
    ),
    "colors": (
        "red", "blue", "green", "yellow", "black", "white", "orange", "purple", "brown", "pink",
    ),
    "numbers": ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
    "body": ("head", "hand", "eye", "foot", "arm", "leg", "face", "mouth", "heart", "brain"),
    "food": (
        "bread", "meat", "rice", "milk", "fish", "salt", "sugar", "cheese", "fruit", "water",
    ),
    "emotions": (
        "happy", "sad", "angry", "fear", "love", "hate", "joy", "hope", "pain", "calm",
    ),
    "actions": ("run", "walk", "jump", "fly", "swim", "eat", "sleep", "talk", "think", "write"),
    "time": (
        "day", "night", "year", "month", "week", "hour", "morning", "evening", "today",
        "tomorrow",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class CategoryStat:
    name: str
    words: tuple[str, ...]  # the single-token words kept
    n_requested: int
    intra: float  # mean pairwise cosine of the kept words
    lift: float  # intra - global mean
    interval: Interval  # of the lift, resampling words

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "words": list(self.words),
            "n_kept": len(self.words),
            "n_requested": int(self.n_requested),
            "intra": float(self.intra),
            "lift": float(self.lift),
            "interval": self.interval.as_dict(),
        }


@dataclass(frozen=True)
class CategoryLift:
    """Intra-category cosine lift over the vocabulary's mean pairwise cosine."""

    categories: tuple[CategoryStat, ...]
    skipped: tuple[str, ...]  # categories with fewer than min_words single-token words
    global_mean: float
    mean_lift: float  # mean over the kept categories
    interval: Interval  # of mean_lift, resampling words within every category at once
    centroid_cosine: NDArray[np.float64] = field(repr=False, compare=False)
    bootstrap: NDArray[np.float64] = field(repr=False, compare=False)  # mean lift per resample

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.categories]

    def as_dict(self) -> dict[str, Any]:
        return {
            "categories": [c.as_dict() for c in self.categories],
            "skipped": list(self.skipped),
            "global_mean": float(self.global_mean),
            "mean_lift": float(self.mean_lift),
            "interval": self.interval.as_dict(),
            "centroid_cosine": [[float(v) for v in row] for row in self.centroid_cosine],
        }


def category_lift(
    embedding: torch.Tensor,
    categories: Mapping[str, Sequence[tuple[str, int]]],
    *,
    n_requested: Mapping[str, int] | None = None,
    min_words: int = 3,
    seed: int = 0,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
) -> CategoryLift:
    """Lift of each category's intra cosine over the vocabulary mean, and centroid cosines.

    categories: name -> [(word, token id)] of the words that are single tokens; a category
    with fewer than `min_words` of them is skipped (listed in `skipped`), as in the research.
    Centroids are the means of the raw embedding rows (not of unit rows), as in the research.
    """
    global_mean = mean_pairwise_cosine(embedding)
    rng = np.random.default_rng(seed)
    kept: list[CategoryStat] = []
    skipped: list[str] = []
    boot_lifts: list[NDArray[np.float64]] = []
    centroids: list[NDArray[np.float64]] = []
    for name, members in categories.items():
        if len(members) < min_words:
            skipped.append(name)
            continue
        ids = torch.as_tensor([t for _, t in members], dtype=torch.long)
        rows = embedding[ids].detach().cpu().double().numpy()
        u = unit_rows(rows)
        intra = float(weighted_pair_cosine(u, np.ones((1, len(members))))[0])
        boot = weighted_pair_cosine(u, resample_counts(len(members), n_bootstrap, rng))
        lift_boot = boot - global_mean
        boot_lifts.append(lift_boot)
        kept.append(
            CategoryStat(
                name=name,
                words=tuple(w for w, _ in members),
                n_requested=(n_requested or {}).get(name, len(members)),
                intra=intra,
                lift=intra - global_mean,
                interval=percentile_interval(
                    lift_boot, confidence, f"bootstrap-percentile({n_bootstrap}) over words"
                ),
            )
        )
        centroids.append(rows.mean(axis=0))
    if not kept:
        raise ValueError(f"no category has {min_words} or more single-token words")
    c = unit_rows(np.stack(centroids))
    mean_lift = float(np.mean([s.lift for s in kept]))
    boot_mean = np.asarray(np.mean(np.stack(boot_lifts), axis=0), dtype=np.float64)
    return CategoryLift(
        categories=tuple(kept),
        skipped=tuple(skipped),
        global_mean=global_mean,
        mean_lift=mean_lift,
        interval=percentile_interval(
            boot_mean,
            confidence,
            f"bootstrap-percentile({n_bootstrap}) over words within categories",
        ),
        centroid_cosine=c @ c.T,
        bootstrap=boot_mean,
    )
