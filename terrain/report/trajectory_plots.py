"""Trajectory plots: one scalar property over a run's checkpoints, beside its null band.

Base64 palette PNGs, as terrain.report.plots makes them, for the self-contained page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from terrain.report.plots import _figure, _png
from terrain.report.trajectory import Checkpoint, Series, Trajectory

NULL_SDS = 2.0  # the shaded null band: the null's mean ± this many sd over its seeds
LABEL_CHARS = 22  # a tick label's length; the checkpoint table has the full names


@dataclass(frozen=True)
class TrajectoryPlot:
    property: str
    statistic: str
    png: str


def plots(trajectory: Trajectory) -> list[TrajectoryPlot]:
    """One plot per scalar property of the trajectory, in its order."""
    points = trajectory.checkpoints
    labels = tick_labels(points, trajectory.by_step)
    xlabel = "step" if trajectory.by_step else "checkpoint, in the order given"
    return [
        TrajectoryPlot(s.property, s.statistic, series_plot(points, labels, s, xlabel))
        for s in trajectory.series
    ]


def tick_labels(checkpoints: Sequence[Checkpoint], by_step: bool) -> list[str]:
    """Short checkpoint names for the x axis (a path's or hub id's last part), with the
    step under each; positions prefixed where two short names would read alike."""
    short = [_short(c.name) for c in checkpoints]
    if len(set(short)) < len(short):
        short = [f"#{i} {s}" for i, s in enumerate(short, 1)]
    if by_step:
        short = [f"{s}\nstep {c.at}" for s, c in zip(short, checkpoints, strict=True)]
    return [_literal(s) for s in short]


def _literal(text: str) -> str:
    """Text matplotlib shows as written (it reads $…$ as mathematics)."""
    return text.replace("$", r"\$")


def _short(name: str) -> str:
    tail = name.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] or name
    return tail if len(tail) <= LABEL_CHARS else "…" + tail[-(LABEL_CHARS - 1) :]


def series_plot(
    checkpoints: Sequence[Checkpoint], labels: Sequence[str], series: Series, xlabel: str
) -> str:
    """The values over the checkpoints (x: step or position), the null's mean dashed with
    its band shaded, and the checkpoints where the value left its baseline tolerance
    marked."""
    fig = _figure(max(4.2, 0.9 * len(checkpoints) + 2.0), 3.0)
    ax = fig.add_subplot(1, 1, 1)
    x = np.array([c.at for c in checkpoints], dtype=np.float64)
    y = np.array(series.values, dtype=np.float64)
    mean = np.array(series.null_means, dtype=np.float64)
    sd = np.array(series.null_sds, dtype=np.float64)
    ax.plot(x, y, "o-", ms=4, lw=1.2, color="C0", label="value")
    if np.isfinite(mean).any():
        ax.plot(x, mean, "--", lw=1.0, color="C1", label="null mean")
        band = np.isfinite(mean) & np.isfinite(sd)
        if band.any():
            ax.fill_between(
                x,
                mean - NULL_SDS * sd,
                mean + NULL_SDS * sd,
                where=band,
                color="C1",
                alpha=0.2,
                label=f"null ± {NULL_SDS:g} sd",
            )
    out = np.array(series.departed, dtype=bool)
    if out.any():
        ax.plot(x[out], y[out], "x", ms=9, mew=2, color="C3", label="outside baseline tolerance")
    ax.set_xticks(x, list(labels), fontsize=6)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel(xlabel, fontsize=7)
    ax.set_title(_literal(series.property), fontsize=9)
    ax.legend(fontsize=6)
    return _png(fig)
