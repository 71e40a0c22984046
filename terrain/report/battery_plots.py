"""Evidence plots of the weights-only battery: the model beside its random-init null in every
figure. Base64 PNG strings, as terrain.report.plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from terrain.report.plots import _figure, _layer_heatmaps, _png

MODEL = "model"
NULL = "null (random init)"

Curve = tuple[Sequence[int], Sequence[float]]


def layer_curves(
    model: Mapping[str, Curve],
    null: Mapping[str, Curve],
    *,
    ylabel: str,
    title: str,
    reference: float | None = None,
    reference_label: str = "",
    dashed: str = NULL,
) -> str:
    """Per-layer values, one line per series: model solid, its null (or what `dashed`
    names) dashed in the same colour."""
    fig = _figure(6.4, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    colors = {label: f"C{i % 10}" for i, label in enumerate(model)}
    for label, (x, y) in model.items():
        ax.plot(list(x), list(y), "o-", ms=3, lw=1.2, color=colors[label], label=label)
    for label, (x, y) in null.items():
        ax.plot(list(x), list(y), "--", lw=1.0, alpha=0.6, color=colors.get(label, "gray"))
    if reference is not None:
        ax.axhline(reference, color="black", lw=0.8, ls=":", label=reference_label or None)
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}  (dashed: {dashed})", fontsize=9)
    if model:
        ax.legend(fontsize=6, ncol=max(1, len(model) // 8 + 1))
    return _png(fig)


def qk_sign_bars(
    labels: Sequence[str], model: Sequence[float], null: Sequence[float], title: str
) -> str:
    """Positive-eigenvalue share per layer, model beside its null, with the 0.5 line."""
    fig = _figure(max(4.0, 0.35 * len(labels) + 2.0), 3.2)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(labels))
    ax.bar(x - 0.2, list(model), width=0.4, label=MODEL)
    ax.bar(x + 0.2, list(null) + [np.nan] * (len(labels) - len(null)), width=0.4, label=NULL)
    ax.axhline(0.5, color="black", lw=0.8, ls=":")
    low = min([0.4, *[v for v in (*model, *null) if np.isfinite(v)]])
    high = max([0.6, *[v for v in (*model, *null) if np.isfinite(v)]])
    ax.set_ylim(low - 0.02, high + 0.02)
    ax.set_xticks(x, list(labels), rotation=90, fontsize=6)
    ax.set_ylabel("positive share of eigenvalues")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def position_bias_heatmaps(
    model: Mapping[str, NDArray[np.float64]], null: Mapping[str, NDArray[np.float64]], title: str
) -> str:
    """Heads × buckets bias tables (each table as stored: buckets × heads), model and null rows."""
    rows = [(f"{label}", m) for label, m in model.items()]
    rows += [(f"{label} ({NULL})", m) for label, m in null.items()]
    fig = _figure(7.0, 1.9 * len(rows) + 0.5)
    ax = None
    for i, (label, table) in enumerate(rows):
        ax = fig.add_subplot(len(rows), 1, i + 1)
        limit = max(float(np.max(np.abs(table))), 1e-6)
        im = ax.imshow(table.T, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(label, fontsize=8)
        ax.set_ylabel("head", fontsize=7)
        ax.tick_params(labelsize=6)
        fig.colorbar(im, ax=ax, fraction=0.03)
    if ax is not None:
        ax.set_xlabel("bucket", fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _png(fig)


def cosine_matrices(matrices: Mapping[str, NDArray[np.float64]], title: str) -> str:
    """Layer × layer cosine heatmaps on one sequential scale from the smallest value to 1."""
    low = min((float(np.min(m)) for m in matrices.values()), default=0.0)
    low = min(low, 0.999)
    return _layer_heatmaps(matrices, title, "viridis", low, 1.0)


def ratio_histogram(
    model: NDArray[np.float64],
    null: NDArray[np.float64],
    *,
    lines: Sequence[float],
    xlabel: str,
    title: str,
) -> str:
    """Histogram of log10(values / their mean), model against null, with threshold lines."""
    fig = _figure(6.0, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    for data, label in ((model, MODEL), (null, NULL)):
        if data.size and float(data.mean()) > 0:
            shown = np.log10(np.maximum(data / data.mean(), 1e-6))
            ax.hist(shown, bins=80, density=True, alpha=0.55, label=label)
    for line in lines:
        ax.axvline(float(np.log10(line)), color="red", ls="--", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return _png(fig)


def eigenspectra(
    model: NDArray[np.float64], null: NDArray[np.float64], *, title: str, ylabel: str
) -> str:
    """Descending eigenvalues normalised by their sum, log scale, model against null."""
    fig = _figure(6.0, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    for data, label in ((model, MODEL), (null, NULL)):
        total = float(np.sum(data))
        if total > 0:
            shown = np.maximum(data / total, 1e-12)
            ax.semilogy(np.arange(1, data.size + 1), shown, lw=1.2, label=label)
    ax.set_xlabel("component")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return _png(fig)
