"""Layer geometry (seed notebook §1): hidden-state geometry of text models, layer by layer.

For hidden states of a fixed sentence set, per layer: the token-norm mean and sd (per
sentence, averaged over sentences, as the research did), the mean pairwise cosine of the
tokens of a sentence (averaged over sentences), the participation ratio of all tokens
pooled, (sum lambda)^2 / sum lambda^2 of their covariance, and the pentachoron CV of the
pooled tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from terrain.measures.representation import unit_rows
from terrain.measures.simplex import simplex_cv

__all__ = [
    "LAYER_SENTENCES",
    "LayerGeometry",
    "layer_geometry",
    "participation_ratio",
    "random_participation_ratio",
]

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
