"""Pentachoron CV band of the token embedding (seed notebook §1: 0.20–0.23 on T5 and Qwen).

The band is per model: the CV of random points falls with dimension (≈0.29 at D≈24,
0.20–0.23 at D≈40–48, <0.07 at D≥512), so the seed's band is the expectation of the seed's
own models only. The null is the same measure on Gaussian points of the same dimension and std.
"""

from __future__ import annotations

import pytest

from plugins.assertions import check
from plugins.recording import Recorder
from terrain.errors import AnatomyError
from terrain.findings import Expected, Finding, Null
from terrain.measures.simplex import gaussian_null_cv, simplex_cv
from terrain.model import LoadedModel
from terrain.report.evidence import Evidence
from terrain.report.plots import volume_histogram

pytestmark = pytest.mark.weights

DEFAULT_SIMPLICES = 1000
DEFAULT_SEED = 0


def test_embedding_simplex_cv_is_in_band(model: LoadedModel, record_finding: Recorder) -> None:
    expect = model.spec.expect.simplex_cv
    n = expect.n_simplices if expect else DEFAULT_SIMPLICES
    seed = expect.seed if expect else DEFAULT_SEED
    try:
        entry = model.anatomy.token_embedding()
    except AnatomyError:
        pytest.skip(f"not applicable: model {model.name!r} has no token embedding (no text input)")
    embedding = model.anatomy.read(entry).to(model.device)
    measured = simplex_cv(embedding, n_simplices=n, seed=seed)
    std = float(embedding.std())
    null = gaussian_null_cv(
        int(embedding.shape[1]), std, n_simplices=n, seed=seed, device=model.device
    )
    finding = Finding(
        model=model.name,
        property="simplex_cv",
        statistic="CV of 4-simplex volumes of the token embedding",
        value=measured.value,
        expected=Expected(expect.band.low, expect.band.high, expect.source) if expect else None,
        null=Null(null.value, f"Gaussian points, D={embedding.shape[1]}, std={std:.3g}"),
        interval=measured.interval,
        n=measured.n_valid,
        seed=seed,
        random_init=model.random_init,
        details={"tensor": entry.tensor, "measured": measured.as_dict(), "null": null.as_dict()},
    )
    plot = volume_histogram(
        measured.volumes, null.volumes, f"{model.name}: simplex volumes (N={measured.n_valid})"
    )
    record_finding(finding, [Evidence("simplex volumes vs null", plot)])
    check(finding)
