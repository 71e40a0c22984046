"""Evidence plots of the deltas against a base model, as base64 PNG strings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from terrain.report.plots import _figure, _png

# Grids up to this many cells get their values written in (a fine-tune's few hot cells are
# then read off the page, not guessed from a colour).
ANNOTATE_CELLS = 160


@dataclass(frozen=True)
class Grid:
    """One stack's values: a row per role, a column per layer (NaN: nothing compared)."""

    rows: Sequence[str]
    columns: Sequence[str]
    values: NDArray[np.float64]  # (rows, columns)


def change_heatmap(panels: Mapping[str, Grid], title: str, label: str) -> str:
    """Role × layer heatmaps, one panel per stack, on one colour scale from 0 to the largest
    value; blank cells are roles the two checkpoints do not share."""
    finite = [g.values[np.isfinite(g.values)] for g in panels.values()]
    high = max((float(v.max()) for v in finite if v.size), default=0.0)
    high = high if high > 0 else 1.0
    width = max(4.5, 0.38 * max((len(g.columns) for g in panels.values()), default=1) + 2.5)
    heights = [0.3 * len(g.rows) + 1.0 for g in panels.values()]
    fig = _figure(width, sum(heights) + 0.6)
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, (stack, grid) in zip(axes, panels.items(), strict=True):
        shown = np.ma.masked_invalid(grid.values)
        im = ax.imshow(shown, aspect="auto", cmap=cmap, vmin=0.0, vmax=high)
        ax.set_yticks(range(len(grid.rows)), list(grid.rows), fontsize=6)
        ax.set_xticks(range(len(grid.columns)), list(grid.columns), fontsize=6)
        ax.set_title(stack, fontsize=8)
        if grid.values.size <= ANNOTATE_CELLS:
            for (i, j), v in np.ndenumerate(grid.values):
                if np.isfinite(v):
                    colour = "black" if v > 0.6 * high else "white"
                    ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=5, color=colour)
        fig.colorbar(im, ax=ax, fraction=0.03, label=label)
    axes[-1].set_xlabel("layer", fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _png(fig)
