"""Evidence plots as base64 PNG strings, ready to embed in a self-contained HTML page."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray


def _figure(width: float, height: float) -> Any:
    import matplotlib

    matplotlib.use("Agg")  # headless, and never a GUI backend inside a test worker
    import matplotlib.pyplot as plt

    return plt.figure(figsize=(width, height))


# An adaptive palette of this many colours: a plot of a few series and one colormap shows
# no visible change, and the PNG is about 4x smaller than full RGBA, which is what keeps
# the self-contained findings page of the default models within its 2 MB.
PALETTE_COLOURS = 256


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt
    from PIL import Image

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=80, facecolor="white")
    plt.close(fig)
    image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    out = io.BytesIO()
    image.quantize(colors=PALETTE_COLOURS, method=Image.Quantize.FASTOCTREE).save(
        out, format="PNG", optimize=True
    )
    return base64.b64encode(out.getvalue()).decode("ascii")


def volume_histogram(
    volumes: NDArray[np.float64], null_volumes: NDArray[np.float64], title: str
) -> str:
    """Simplex volumes / their mean, model against the Gaussian null (CV is scale-free)."""
    fig = _figure(6, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    for data, label in ((volumes, "model"), (null_volumes, "null: Gaussian points")):
        ax.hist(data / data.mean(), bins=60, density=True, alpha=0.55, label=label)
    ax.set_xlabel("volume / mean volume")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return _png(fig)


def _layer_heatmaps(
    panels: Mapping[str, NDArray[np.float64]], title: str, cmap: str, vmin: float, vmax: float
) -> str:
    """Layer x layer heatmaps, one panel per label (four to a row), on one colour scale."""
    n = len(panels)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig = _figure(3.0 * cols, 2.8 * rows + 0.4)
    for i, (label, m) in enumerate(panels.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_title(label, fontsize=8)
        ax.set_xlabel("layer", fontsize=7)
        ax.set_ylabel("layer", fontsize=7)
        ax.tick_params(labelsize=6)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(title, fontsize=9)
    return _png(fig)


def layer_matrices(matrices: Mapping[str, NDArray[np.float64]], title: str) -> str:
    """Layer x layer cosine heatmaps, one panel per (stack, role), on a shared symmetric scale."""
    limit = max((float(np.max(np.abs(m - np.eye(len(m))))) for m in matrices.values()), default=1.0)
    limit = max(limit, 1e-3)
    # The diagonal (always 1) blanked.
    shown = {label: m - np.eye(len(m)) * np.diag(m) for label, m in matrices.items()}
    return _layer_heatmaps(shown, title, "RdBu_r", -limit, limit)


def threshold_bars(
    roles: Sequence[str],
    model: Mapping[str, Mapping[float, float]],
    null: Mapping[str, Mapping[float, float]],
    title: str,
) -> str:
    """Fraction of |w| below each threshold per role, model beside its random-init null."""
    thresholds = sorted({t for fr in model.values() for t in fr})
    fig = _figure(2.4 * len(thresholds) + 1, 3.0)
    x = np.arange(len(roles))
    for i, t in enumerate(thresholds):
        ax = fig.add_subplot(1, len(thresholds), i + 1)
        ax.bar(x - 0.2, [model[r][t] for r in roles], width=0.4, label="model")
        ax.bar(
            x + 0.2,
            [null[r][t] if r in null else np.nan for r in roles],
            width=0.4,
            label="null (random init)",
        )
        ax.set_xticks(x, list(roles))
        ax.set_ylim(0, 1)
        ax.set_title(f"|w| < {t:g}", fontsize=8)
        if i == 0:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _png(fig)
