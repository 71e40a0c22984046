"""Evidence PNGs: palette-quantised to keep the page small, with no visible change."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from terrain.report import plots


def _decode(png: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(png)))


def test_a_heatmap_is_a_smaller_palette_png_close_to_its_full_colour_render(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(0)
    matrices = {"encoder.q": np.asarray(np.corrcoef(rng.normal(size=(12, 40))), dtype=np.float64)}
    quantised_png = plots.layer_matrices(matrices, "heatmap")
    # the same figure without the palette step, for comparison
    monkeypatch.setattr(Image.Image, "quantize", lambda self, colors=256, method=None: self)
    full_png = plots.layer_matrices(matrices, "heatmap")
    quantised, full = _decode(quantised_png), _decode(full_png)
    assert quantised.mode == "P"
    assert full.mode == "RGB"
    assert full.size == quantised.size
    a = np.asarray(quantised.convert("RGB"), dtype=np.float64)
    b = np.asarray(full, dtype=np.float64)
    assert np.abs(a - b).mean() < 2.0  # out of 255: no visible change
    assert len(quantised_png) < len(full_png) / 2
