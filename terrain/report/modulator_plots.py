"""Plots of modulator measurements."""

from __future__ import annotations

from collections.abc import Mapping

from terrain.report.plots import _figure, _png


def sweep_plot(sweep: Mapping[float, Mapping[int, float]], boundary: float, title: str) -> str:
    """Per-layer drift against α, with the notebook's claimed boundary marked."""
    fig = _figure(6, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    alphas = sorted(sweep)
    layers = sorted(next(iter(sweep.values())))
    for layer in layers:
        ax.plot(alphas, [sweep[a][layer] for a in alphas], marker="o", ms=3, label=f"layer {layer}")
    ax.axvline(boundary, color="k", ls="--", lw=1)
    ax.text(boundary, ax.get_ylim()[1] * 0.95, f" claimed {boundary}", fontsize=7, va="top")
    ax.set_xlabel("α")
    ax.set_ylabel("relative drift of block output")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    return _png(fig)
