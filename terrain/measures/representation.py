"""Representation geometry of text models (seed notebook §1, §13): the digit manifold,
semantic-category clustering of the token embedding, and layer-by-layer hidden-state geometry.

Pure functions on tensors: token ids, embeddings and hidden states come from the caller.

Digit manifold. For the embeddings of the tokens "0" ... "9", the research correlates |i - j|
with the cosine of digits i and j over the 45 pairs (T5-small; Qwen3.5-0.8B gave -0.862): a
negative value means numerically close digits sit close together. The 45 pairs are not
independent (each digit is in 9), so the interval is a jackknife over digits (leave one
digit out, 36 pairs, t interval with k-1 degrees of freedom) and the test of "no ordinal
structure" is a Mantel permutation test: relabel the digits at random and count how often
the correlation is at least as negative.

Semantic categories. Intra-category mean pairwise cosine of single-token words, minus the
mean pairwise cosine of the whole vocabulary (the research sampled 5000 tokens; here the
exact mean over all rows, from |sum of unit rows|^2). Intervals resample words within each
category (pairs of a word with its own copy are left out).

Layer geometry. For hidden states of a fixed sentence set, per layer: the token-norm mean and
sd (per sentence, averaged over sentences, as the research did), the mean pairwise cosine of
the tokens of a sentence (averaged over sentences), the participation ratio of all tokens
pooled, (sum lambda)^2 / sum lambda^2 of their covariance, and the pentachoron CV of the
pooled tokens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from scipy import stats

from terrain.bootstrap import Interval, percentile_interval, resample_counts
from terrain.measures.simplex import simplex_cv

__all__ = [
    "LAYER_SENTENCES",
    "SEED_CATEGORIES",
    "CategoryLift",
    "CategoryStat",
    "DigitManifold",
    "LayerGeometry",
    "category_lift",
    "digit_manifold",
    "layer_geometry",
    "mean_pairwise_cosine",
    "participation_ratio",
    "random_participation_ratio",
    "unit_rows",
    "weighted_pair_cosine",
]

_TINY = 1e-12  # a zero row stays zero instead of dividing by zero

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

LAYER_SENTENCES: tuple[str, ...] = (
    # The research's ten sentences (seed notebook §1), verbatim ...
    "The cat sat on the mat.",
    "Quantum mechanics describes the behavior of particles at the atomic scale.",
    "She quickly ran to the store before it closed.",
    "The derivative of x squared is two x.",
    "Red and blue make purple when mixed together.",
    "The president signed the new trade agreement yesterday.",
    "Three plus four equals seven.",
    "Love is patient, love is kind.",
    "The function returns a sorted list of integers.",
    "Mount Everest is the tallest mountain in the world.",
    # ... and thirty more of the same spread (everyday, science, maths, code, news, poetry),
    # so that the pooled tokens (about 500) bound the participation ratio less tightly.
    "A light rain fell over the quiet village all night.",
    "Photosynthesis converts sunlight, water and carbon dioxide into sugar.",
    "He forgot his umbrella and got soaked on the way home.",
    "The sum of the angles of a triangle is one hundred and eighty degrees.",
    "Children were playing football in the park after school.",
    "The central bank raised interest rates by a quarter of a point.",
    "Water boils at a lower temperature on top of a high mountain.",
    "The loop exits when the counter reaches zero.",
    "Shakespeare wrote many of his plays for the Globe Theatre.",
    "A prime number has exactly two distinct divisors.",
    "The orchestra tuned their instruments before the concert began.",
    "Antibiotics do not work against viral infections.",
    "My grandmother bakes bread every Sunday morning.",
    "The river flooded the fields after the storm.",
    "Electrons carry a negative electric charge.",
    "The train to the airport leaves every twenty minutes.",
    "Please close the window, it is getting cold in here.",
    "The court ruled that the contract was not valid.",
    "Honey never spoils if it is kept in a sealed jar.",
    "The square root of sixty four is eight.",
    "Old letters were found hidden behind the fireplace.",
    "The database index speeds up queries on large tables.",
    "Wolves hunt in packs and communicate by howling.",
    "The museum displays paintings from the sixteenth century.",
    "Ice floats because it is less dense than liquid water.",
    "The team celebrated their victory late into the night.",
    "A gentle breeze carried the smell of the sea.",
    "Vaccines train the immune system to recognize a pathogen.",
    "The stock market fell sharply after the announcement.",
    "Every morning she writes three pages in her journal.",
)


# Rows turned into unit vectors at once by mean_pairwise_cosine (128 MiB of float64 at D=1024).
_PAIRWISE_CHUNK = 16384


def unit_rows(x: torch.Tensor | NDArray[Any]) -> NDArray[np.float64]:
    """Rows scaled to unit length (float64).

    The research divided by |x| + 1e-8, which moves every cosine by ~1e-8/|x|; here the
    norm is only clamped away from zero, so a row's cosine with itself is 1.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        x = (t.float() if t.dtype == torch.bfloat16 else t).numpy()
    a = np.asarray(x, np.float64)
    norm = np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), _TINY)
    return np.asarray(a / norm, dtype=np.float64)


def mean_pairwise_cosine(
    x: torch.Tensor | NDArray[Any], chunk_rows: int = _PAIRWISE_CHUNK
) -> float:
    """Mean cosine over all pairs i < j of rows of x, exactly, in O(N D).

    Sum over i != j of u_i . u_j is |sum u|^2 - sum |u_i|^2, so no N x N matrix is formed;
    the unit rows are made `chunk_rows` at a time (a 7B model's table in float64 is 3 GB).
    """
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"a mean pairwise cosine needs at least 2 rows, got {n}")
    s: NDArray[Any] | None = None
    squares = 0.0
    for start in range(0, n, chunk_rows):
        u = unit_rows(x[start : start + chunk_rows])
        s = u.sum(axis=0) if s is None else s + u.sum(axis=0)
        squares += float(np.sum(u * u))
    assert s is not None
    return float((s @ s - squares) / (n * (n - 1)))


def weighted_pair_cosine(u: NDArray[np.float64], weights: NDArray[np.float64]) -> NDArray[Any]:
    """Mean cosine over pairs of distinct items of each weighted multiset of unit rows.

    u: (n, D) unit rows; weights: (B, n) multiplicities (a bootstrap resample's counts).
    A pair of copies of the same item is not a pair: sum_{i != j} w_i w_j u_i . u_j over
    sum_{i != j} w_i w_j. Returns (B,); NaN where fewer than two distinct items are drawn.
    """
    s = weights @ u
    self_w = np.sum(weights * weights * np.sum(u * u, axis=1), axis=1)
    num = np.einsum("bd,bd->b", s, s) - self_w
    total = weights.sum(axis=1)
    den = total * total - np.sum(weights * weights, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(den > 0, num / den, np.nan), dtype=np.float64)


# --- digit manifold -------------------------------------------------------------------


@dataclass(frozen=True)
class DigitManifold:
    """Correlation of |i - j| with the cosine of digits i and j, and its companions."""

    correlation: float
    interval: Interval  # jackknife over digits
    mantel_p: float  # one-sided: share of relabelings with a correlation <= the observed
    n_permutations: int
    adjacent_mean: float  # mean cosine of pairs with |i - j| = 1
    nonadjacent_mean: float  # mean cosine of pairs with |i - j| > 1
    cosine: NDArray[np.float64] = field(repr=False, compare=False)

    @property
    def gap(self) -> float:
        return self.adjacent_mean - self.nonadjacent_mean

    def as_dict(self) -> dict[str, Any]:
        return {
            "correlation": float(self.correlation),
            "interval": self.interval.as_dict(),
            "mantel_p": float(self.mantel_p),
            "n_permutations": int(self.n_permutations),
            "adjacent_mean": float(self.adjacent_mean),
            "nonadjacent_mean": float(self.nonadjacent_mean),
            "gap": float(self.gap),
            "cosine": [[float(v) for v in row] for row in self.cosine],
        }


def _pearson_rows(x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    """Pearson correlation of each row of x (B, n) with y (n,) or the rows of y (B, n)."""
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    num = np.sum(xc * yc, axis=-1)
    den = np.sqrt(np.sum(xc * xc, axis=-1) * np.sum(yc * yc, axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(num / den, dtype=np.float64)


def digit_manifold(
    vectors: torch.Tensor | NDArray[Any],
    *,
    seed: int = 0,
    n_permutations: int = 9999,
    confidence: float = 0.95,
) -> DigitManifold:
    """The digit manifold of k >= 4 ordered items (rows of `vectors`, item i = digit i)."""
    u = unit_rows(vectors)
    k = u.shape[0]
    if k < 4:
        raise ValueError(f"the digit manifold needs at least 4 ordered items, got {k}")
    cos = u @ u.T
    iu, ju = np.triu_indices(k, 1)
    pair_cos = cos[iu, ju]
    dist = np.abs(iu - ju).astype(np.float64)
    r = float(_pearson_rows(dist, pair_cos))

    # Jackknife over items: drop item m and every pair that contains it.
    leave_out = np.array(
        [float(_pearson_rows(dist[keep], pair_cos[keep])) for keep in _pairs_without(iu, ju, k)]
    )
    mean_lo = leave_out.mean()
    se = math.sqrt((k - 1) / k * float(np.sum((leave_out - mean_lo) ** 2)))
    t = float(stats.t.ppf(0.5 + confidence / 2.0, k - 1))
    interval = Interval(
        max(-1.0, r - t * se), min(1.0, r + t * se), confidence, f"jackknife-over-items t({k - 1})"
    )

    rng = np.random.default_rng(seed)
    labels = np.argsort(rng.random((n_permutations, k)), axis=1)
    perm_dist = np.abs(labels[:, iu] - labels[:, ju]).astype(np.float64)
    perm_r = _pearson_rows(perm_dist, pair_cos)
    p = (1.0 + float(np.sum(perm_r <= r + 1e-12))) / (n_permutations + 1.0)

    adjacent = dist == 1
    return DigitManifold(
        correlation=r,
        interval=interval,
        mantel_p=p,
        n_permutations=n_permutations,
        adjacent_mean=float(pair_cos[adjacent].mean()),
        nonadjacent_mean=float(pair_cos[~adjacent].mean()),
        cosine=cos,
    )


def _pairs_without(iu: NDArray[Any], ju: NDArray[Any], k: int) -> list[NDArray[np.bool_]]:
    return [(iu != m) & (ju != m) for m in range(k)]


# --- semantic categories --------------------------------------------------------------


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


# --- layer geometry -------------------------------------------------------------------


def participation_ratio(x: torch.Tensor | NDArray[Any]) -> float:
    """(sum lambda)^2 / sum lambda^2 of the covariance of the rows of x (N, D).

    From the centred Gram matrix, which has the same non-zero spectrum as the covariance:
    (tr G)^2 / |G|_F^2 with G the smaller of Xc Xc^T and Xc^T Xc, so no eigensolver runs.
    """
    a = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, np.float64)
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"participation_ratio needs (N >= 2, D) rows, got {a.shape}")
    xc = a - a.mean(axis=0)
    g = xc @ xc.T if xc.shape[0] <= xc.shape[1] else xc.T @ xc
    fro2 = float(np.sum(g * g))
    return float(np.trace(g) ** 2 / fro2) if fro2 > 0 else 0.0


def random_participation_ratio(n: int, d: int) -> float:
    """Analytic null: PR of an N x D i.i.d. Gaussian matrix is about D / (1 + D/N)."""
    return d / (1.0 + d / n)


@dataclass(frozen=True)
class LayerGeometry:
    """Per-layer curves (index 0 = embedding output) over a fixed set of texts."""

    norm_mean: NDArray[np.float64]
    norm_sd: NDArray[np.float64]
    mean_cosine: NDArray[np.float64]
    cosine_sd: NDArray[np.float64]
    participation_ratio: NDArray[np.float64]
    simplex_cv: NDArray[np.float64]
    simplex_cv_low: NDArray[np.float64]
    simplex_cv_high: NDArray[np.float64]
    n_tokens: int
    n_texts: int
    dim: int
    n_simplices: int
    seed: int

    @property
    def n_layers(self) -> int:
        return len(self.norm_mean)

    @property
    def random_pr(self) -> float:
        return random_participation_ratio(self.n_tokens, self.dim)

    def as_dict(self) -> dict[str, Any]:
        def floats(a: NDArray[np.float64]) -> list[float]:
            return [float(v) for v in a]

        return {
            "norm_mean": floats(self.norm_mean),
            "norm_sd": floats(self.norm_sd),
            "mean_cosine": floats(self.mean_cosine),
            "cosine_sd": floats(self.cosine_sd),
            "participation_ratio": floats(self.participation_ratio),
            "random_participation_ratio": float(self.random_pr),
            "simplex_cv": floats(self.simplex_cv),
            "simplex_cv_low": floats(self.simplex_cv_low),
            "simplex_cv_high": floats(self.simplex_cv_high),
            "n_tokens": int(self.n_tokens),
            "n_texts": int(self.n_texts),
            "dim": int(self.dim),
            "n_simplices": int(self.n_simplices),
            "seed": int(self.seed),
        }


def _per_text_cosine(
    u: NDArray[np.float64], index: NDArray[np.int64], n_texts: int
) -> tuple[float, float]:
    """Mean over texts of (mean, sd) of the pairwise token cosines within each text.

    Texts of one token have no pair and are left out; the sd is the population sd over a
    text's ordered pairs i != j (each unordered pair counted twice, which leaves it unchanged).
    """
    means: list[float] = []
    sds: list[float] = []
    for t in range(n_texts):
        rows = u[index == t]
        n = rows.shape[0]
        if n < 2:
            continue
        g = rows @ rows.T
        off = g[~np.eye(n, dtype=bool)]
        means.append(float(off.mean()))
        sds.append(float(off.std()))
    if not means:
        return math.nan, math.nan
    return float(np.mean(means)), float(np.mean(sds))


def layer_geometry(
    states: Sequence[torch.Tensor],
    text_index: torch.Tensor,
    n_texts: int,
    *,
    n_simplices: int = 1000,
    seed: int = 0,
) -> LayerGeometry:
    """Curves of norm, within-text cosine, participation ratio and simplex CV per layer."""
    if not states:
        raise ValueError("layer_geometry needs at least one layer of states")
    index = text_index.detach().cpu().numpy().astype(np.int64)
    counts = np.bincount(index, minlength=n_texts).astype(np.float64)
    has = counts > 0
    cols: dict[str, list[float]] = {
        k: [] for k in ("nm", "ns", "cm", "cs", "pr", "cv", "cvl", "cvh")
    }
    for h in states:
        a = h.detach().cpu().double().numpy()
        norms = np.linalg.norm(a, axis=1)
        s1 = np.bincount(index, weights=norms, minlength=n_texts)
        s2 = np.bincount(index, weights=norms * norms, minlength=n_texts)
        mean_t = s1[has] / counts[has]
        var_t = np.maximum(s2[has] / counts[has] - mean_t**2, 0.0)
        cols["nm"].append(float(mean_t.mean()))
        cols["ns"].append(float(np.sqrt(var_t).mean()))
        cm, cs = _per_text_cosine(unit_rows(a), index, n_texts)
        cols["cm"].append(cm)
        cols["cs"].append(cs)
        cols["pr"].append(participation_ratio(a))
        cv = simplex_cv(h.detach().cpu().float(), n_simplices=n_simplices, seed=seed)
        cols["cv"].append(cv.value)
        cols["cvl"].append(cv.interval.low)
        cols["cvh"].append(cv.interval.high)
    arr = {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}
    return LayerGeometry(
        norm_mean=arr["nm"],
        norm_sd=arr["ns"],
        mean_cosine=arr["cm"],
        cosine_sd=arr["cs"],
        participation_ratio=arr["pr"],
        simplex_cv=arr["cv"],
        simplex_cv_low=arr["cvl"],
        simplex_cv_high=arr["cvh"],
        n_tokens=int(states[0].shape[0]),
        n_texts=int(n_texts),
        dim=int(states[0].shape[1]),
        n_simplices=int(n_simplices),
        seed=int(seed),
    )
