"""Evidence plots of the representation and WordNet properties: the model beside its
random-init null in every figure. Base64 PNG strings, as terrain.report.plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from terrain.report.plots import _figure, _png

MODEL = "model"
NULL = "null (random init)"
_COLORS = {MODEL: "tab:blue", NULL: "tab:gray"}


def digit_matrices(model: NDArray[np.float64], null: NDArray[np.float64], title: str) -> str:
    """Digit x digit cosine heatmaps, model and null, on a shared scale."""
    fig = _figure(7.2, 3.2)
    limit = max(float(np.max(np.abs(m - np.diag(np.diag(m))))) for m in (model, null))
    limit = max(limit, 1e-3)
    for i, (label, m) in enumerate(((MODEL, model), (NULL, null))):
        ax = fig.add_subplot(1, 2, i + 1)
        shown = m - np.diag(np.diag(m))  # blank the diagonal (always 1)
        im = ax.imshow(shown, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ticks = list(range(len(m)))
        ax.set_xticks(ticks, [str(t) for t in ticks], fontsize=7)
        ax.set_yticks(ticks, [str(t) for t in ticks], fontsize=7)
        ax.set_title(label, fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(title, fontsize=9)
    return _png(fig)


def interval_bars(
    labels: Sequence[str],
    series: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]],
    title: str,
    ylabel: str,
    reference: float | None = None,
) -> str:
    """Grouped bars with interval whiskers: series name -> (values, lows, highs)."""
    fig = _figure(min(12.0, max(4.0, 0.3 * len(labels) * len(series) + 1.5)), 3.4)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(series))
    for k, (name, (values, lows, highs)) in enumerate(series.items()):
        v = np.asarray(values, dtype=np.float64)
        err = np.stack([v - np.asarray(lows), np.asarray(highs) - v])
        pos = x - 0.4 + width * (k + 0.5)
        color = _COLORS.get(name)
        ax.bar(pos, v, width=width, label=name, color=color, yerr=err, capsize=2)
    if reference is not None:
        ax.axhline(reference, color="k", lw=0.8, ls="--")
    ax.set_xticks(x, list(labels), rotation=45, ha="right", fontsize=7)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def centroid_matrices(
    names: Sequence[str], model: NDArray[np.float64], null: NDArray[np.float64], title: str
) -> str:
    """Category-centroid cosine heatmaps, model and null."""
    fig = _figure(8.0, 3.6)
    for i, (label, m) in enumerate(((MODEL, model), (NULL, null))):
        ax = fig.add_subplot(1, 2, i + 1)
        im = ax.imshow(m, cmap="RdBu_r", vmin=-1, vmax=1)
        ticks = list(range(len(names)))
        ax.set_xticks(ticks, list(names), rotation=60, ha="right", fontsize=6)
        ax.set_yticks(ticks, list(names), fontsize=6)
        ax.set_title(label, fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(title, fontsize=9)
    return _png(fig)


def layer_curves(
    curves: Mapping[str, Mapping[str, Any]],
    title: str,
    random_pr: float | None = None,
) -> str:
    """Per-layer norm, within-sentence cosine, participation ratio and simplex CV.

    curves: series name (model / null) -> LayerGeometry.as_dict().
    """
    panels = (
        ("norm_mean", "norm_sd", "token norm (mean ± sd)"),
        ("mean_cosine", "cosine_sd", "within-sentence cosine (mean ± sd)"),
        ("participation_ratio", None, "participation ratio"),
        ("simplex_cv", None, "pentachoron CV (95% CI)"),
    )
    fig = _figure(10.0, 2.9)
    for p, (key, spread, label) in enumerate(panels):
        ax = fig.add_subplot(1, 4, p + 1)
        for name, c in curves.items():
            y = np.asarray(c[key], dtype=np.float64)
            x = np.arange(len(y))
            color = _COLORS.get(name)
            ax.plot(x, y, "o-", ms=3, label=name, color=color)
            if spread is not None:
                s = np.asarray(c[spread], dtype=np.float64)
                ax.fill_between(x, y - s, y + s, alpha=0.2, color=color)
            if key == "simplex_cv":
                lo = np.asarray(c["simplex_cv_low"], dtype=np.float64)
                hi = np.asarray(c["simplex_cv_high"], dtype=np.float64)
                ax.fill_between(x, lo, hi, alpha=0.2, color=color)
        if key == "participation_ratio" and random_pr is not None:
            ax.axhline(random_pr, color="k", lw=0.8, ls="--", label="Gaussian N×D")
        ax.set_xlabel("layer (0 = embeddings)", fontsize=7)
        ax.set_title(label, fontsize=8)
        ax.tick_params(labelsize=6)
        if p == 0 or key == "participation_ratio":
            ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    return _png(fig)


def similarity_scatter(
    similarity: NDArray[np.float64],
    cosines: Mapping[str, NDArray[np.float64]],
    title: str,
    xlabel: str,
    max_points: int = 4000,
    seed: int = 0,
) -> str:
    """Cosine against the reference similarity per pair, with the least-squares line.

    At most `max_points` pairs are drawn (a seeded subset); the line is fitted on all.
    Similarities are discrete, so the points get a small horizontal jitter.
    """
    rng = np.random.default_rng(seed)
    n = len(similarity)
    shown = rng.choice(n, size=min(n, max_points), replace=False)
    span = float(np.ptp(similarity)) or 1.0
    jitter = rng.uniform(-0.006, 0.006, size=shown.size) * span
    fig = _figure(4.0 * len(cosines), 3.3)
    for k, (name, cos) in enumerate(cosines.items()):
        ax = fig.add_subplot(1, len(cosines), k + 1)
        ax.scatter(similarity[shown] + jitter, cos[shown], s=2, alpha=0.25, color=_COLORS.get(name))
        slope, intercept = np.polyfit(similarity, cos, 1)
        xs = np.linspace(float(similarity.min()), float(similarity.max()), 20)
        r = float(np.corrcoef(similarity, cos)[0, 1])
        ax.plot(xs, slope * xs + intercept, color="tab:red", lw=1.2, label=f"fit, r={r:.3f}")
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("cosine of definitions", fontsize=8)
        ax.set_title(name, fontsize=8)
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    return _png(fig)


def band_means(
    bands: Mapping[str, Sequence[Mapping[str, Any]]],
    title: str,
    xlabel: str,
) -> str:
    """Mean cosine per similarity band with its interval; bands: series -> BandMean dicts."""
    fig = _figure(5.5, 3.3)
    ax = fig.add_subplot(1, 1, 1)
    for k, (name, rows) in enumerate(bands.items()):
        kept = [r for r in rows if r["mean"] is not None]
        centre = np.array([(r["band"][0] + r["band"][1]) / 2 for r in kept])
        mean = np.array([r["mean"] for r in kept], dtype=np.float64)
        lo = np.array([r["interval"]["low"] for r in kept], dtype=np.float64)
        hi = np.array([r["interval"]["high"] for r in kept], dtype=np.float64)
        offset = (k - (len(bands) - 1) / 2) * 0.008
        ax.errorbar(
            centre + offset,
            mean,
            yerr=np.stack([mean - lo, hi - mean]),
            fmt="o-",
            ms=4,
            capsize=3,
            label=name,
            color=_COLORS.get(name),
        )
        for c, m, r in zip(centre, mean, kept, strict=True):
            ax.annotate(
                f"n={r['n']}",
                (c + offset, m),
                xytext=(3, 3),
                textcoords="offset points",
                fontsize=6,
            )
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("mean cosine (95% CI)", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def depth_curves(
    curves: Mapping[str, Mapping[str, Any]],
    title: str,
) -> str:
    """Mean cosine of an item with its k-th hypernym, k = 1 ... K; curves: ChainDecay dicts."""
    fig = _figure(5.0, 3.3)
    ax = fig.add_subplot(1, 1, 1)
    for name, c in curves.items():
        y = np.asarray(c["depth_means"], dtype=np.float64)
        x = np.arange(1, len(y) + 1)
        color = _COLORS.get(name)
        ax.plot(x, y, "o-", ms=4, label=f"{name} (decay {c['decay']:.3f})", color=color)
        ax.fill_between(x, c["depth_low"], c["depth_high"], alpha=0.2, color=color)
        ax.set_xticks(x)
    ax.set_xlabel("hypernym steps up the chain", fontsize=8)
    ax.set_ylabel("mean cosine with the item (95% CI)", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def seed_strips(
    values: Mapping[str, NDArray[np.float64]],
    title: str,
    ylabel: str,
) -> str:
    """One point per seed for each series (e.g. model, null, difference), with the mean."""
    fig = _figure(5.0, 3.3)
    ax = fig.add_subplot(1, 1, 1)
    rng = np.random.default_rng(0)
    for k, (name, v) in enumerate(values.items()):
        v = np.asarray(v, dtype=np.float64)
        ax.scatter(k + rng.uniform(-0.12, 0.12, v.size), v, s=10, color=_COLORS.get(name))
        ax.hlines(float(np.mean(v)), k - 0.25, k + 0.25, color="k", lw=1.2)
    ax.axhline(0.0, color="k", lw=0.6, ls=":")
    ax.set_xticks(range(len(values)), list(values), fontsize=7)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    return _png(fig)
