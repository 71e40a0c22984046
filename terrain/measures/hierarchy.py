"""WordNet's hierarchy in a representation (seed notebook §2, §3): cosine along hypernym
chains, and clustering by label.

Pure functions on arrays: vectors (N, D), chain indices, labels.

Statistics, per the research:
- The decay of cosine along hypernym chains: mean cos(item, its k-th first hypernym) for
  k = 1 ... K on the same chains, and decay = depth 1 minus depth K.
- Clustering by label (WordNet lexicographer file): mean cosine of same-label pairs minus
  different-label pairs, with a bootstrap over items.

Both bootstraps are count resamples (terrain/bootstrap.py) drawn from the seed alone, so
a model and its null measured with the same seed on the same chains or items give paired
draws (the `bootstrap` field of each result) for `paired_interval`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from terrain.bootstrap import (
    Interval,
    count_bootstrap,
    percentile_bounds,
    percentile_interval,
    resample_counts,
)
from terrain.measures.representation import unit_rows

__all__ = ["ChainDecay", "LabelLift", "chain_decay", "label_lift"]


# --- hypernym chains ------------------------------------------------------------------


@dataclass(frozen=True)
class ChainDecay:
    """Mean cosine of an item with its k-th hypernym, k = 1 ... K, over the same chains."""

    depth_means: NDArray[np.float64]  # (K,)
    depth_low: NDArray[np.float64]
    depth_high: NDArray[np.float64]
    decay: float  # depth 1 minus depth K
    interval: Interval  # of the decay, paired bootstrap over chains
    n_chains: int
    bootstrap: NDArray[np.float64] = field(repr=False, compare=False)  # decay per resample

    def as_dict(self) -> dict[str, Any]:
        return {
            "depth_means": [float(v) for v in self.depth_means],
            "depth_low": [float(v) for v in self.depth_low],
            "depth_high": [float(v) for v in self.depth_high],
            "decay": float(self.decay),
            "interval": self.interval.as_dict(),
            "n_chains": int(self.n_chains),
        }


def chain_decay(
    vectors: torch.Tensor | NDArray[Any],
    roots: NDArray[np.int64],
    chains: NDArray[np.int64],
    *,
    seed: int = 0,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
) -> ChainDecay:
    """roots: (C,) row of each chain's item; chains: (C, K) rows of its 1st ... K-th hypernym."""
    if chains.ndim != 2 or chains.shape[0] != roots.shape[0] or chains.shape[0] < 2:
        raise ValueError(
            f"need (C,) roots and (C, K) chains with C >= 2, got {roots.shape}, {chains.shape}"
        )
    u = unit_rows(vectors)
    cos = np.einsum("cd,ckd->ck", u[roots], u[chains])  # (C, K)
    c = cos.shape[0]
    w = resample_counts(c, n_bootstrap, np.random.default_rng(seed))
    boot = (w @ cos) / c  # (B, K)
    low, high = percentile_bounds(boot, confidence)
    means = cos.mean(axis=0)
    return ChainDecay(
        depth_means=means,
        depth_low=low,
        depth_high=high,
        decay=float(means[0] - means[-1]),
        interval=percentile_interval(
            boot[:, 0] - boot[:, -1], confidence, f"bootstrap-percentile({n_bootstrap}) over chains"
        ),
        n_chains=c,
        bootstrap=boot[:, 0] - boot[:, -1],
    )


# --- clustering by label --------------------------------------------------------------


@dataclass(frozen=True)
class LabelLift:
    """Same-label minus different-label mean pair cosine, and each label's intra cosine."""

    lift: float
    interval: Interval
    same: float
    different: float
    per_label: dict[str, tuple[int, float]]  # label -> (items, intra mean cosine)
    n_items: int
    bootstrap: NDArray[np.float64] = field(repr=False, compare=False)  # lift per resample

    def as_dict(self) -> dict[str, Any]:
        return {
            "lift": float(self.lift),
            "interval": self.interval.as_dict(),
            "same": float(self.same),
            "different": float(self.different),
            "per_label": {k: {"n": n, "intra": float(v)} for k, (n, v) in self.per_label.items()},
            "n_items": int(self.n_items),
        }


def _label_sums(
    u: NDArray[np.float64], groups: list[NDArray[np.int64]], w: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(same num, same den, all num, all den) of pair cosines under weights w (B, n)."""
    self_w = np.sum(w * w * np.sum(u * u, axis=1), axis=1)  # |u_i|^2: 1, or 0 for a zero row
    total = w.sum(axis=1)
    s = w @ u
    all_num = np.einsum("bd,bd->b", s, s) - self_w
    all_den = total * total - np.sum(w * w, axis=1)
    same_num = np.zeros(w.shape[0])
    same_den = np.zeros(w.shape[0])
    for idx in groups:
        wk = w[:, idx]
        sk = wk @ u[idx]
        tk = wk.sum(axis=1)
        sq = np.sum(wk * wk, axis=1)
        same_num += np.einsum("bd,bd->b", sk, sk) - np.sum(wk * wk * np.sum(u[idx] ** 2, 1), 1)
        same_den += tk * tk - sq
    return same_num, same_den, all_num, all_den


def label_lift(
    vectors: torch.Tensor | NDArray[Any],
    labels: Sequence[str],
    *,
    min_size: int = 10,
    seed: int = 0,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
) -> LabelLift:
    """Mean cosine of same-label pairs minus different-label pairs (labels with >= min_size
    items only), with a bootstrap over items; per label, its intra mean cosine."""
    u_all = unit_rows(vectors)
    names, inverse, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    keep_label = counts >= min_size
    if keep_label.sum() < 2:
        raise ValueError(f"need at least 2 labels with >= {min_size} items, got {keep_label.sum()}")
    keep = keep_label[inverse]
    u = u_all[keep]
    lab = inverse[keep]
    groups = [np.flatnonzero(lab == g) for g in np.flatnonzero(keep_label)]

    def split(w: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
        sn, sd, an, ad = _label_sums(u, groups, w)
        same = sn / sd
        diff = (an - sn) / (ad - sd)
        return same - diff, same, diff

    lift, same, diff = (float(v[0]) for v in split(np.ones((1, len(u)))))
    boot = count_bootstrap(lambda w: split(w)[:1], len(u), n_bootstrap, seed)[0]
    per_label: dict[str, tuple[int, float]] = {}
    for g, idx in zip(np.flatnonzero(keep_label), groups, strict=True):
        s = u[idx].sum(axis=0)
        n = len(idx)
        per_label[str(names[g])] = (n, float((s @ s - np.sum(u[idx] ** 2)) / (n * (n - 1))))
    return LabelLift(
        lift=lift,
        interval=percentile_interval(
            boot, confidence, f"bootstrap-percentile({n_bootstrap}) over items"
        ),
        same=same,
        different=diff,
        per_label=per_label,
        n_items=len(u),
        bootstrap=boot,
    )
