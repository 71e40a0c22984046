"""Near-zero correlation of attention weights across layers (seed notebook §4)."""

from __future__ import annotations

import pytest

from plugins.assertions import check
from plugins.recording import Recorder
from terrain.findings import Expected, Finding, Null
from terrain.measures.crosslayer import crosslayer_correlation
from terrain.model import LoadedModel
from terrain.report.evidence import Evidence
from terrain.report.plots import layer_matrices

pytestmark = pytest.mark.weights


def test_attention_weights_are_uncorrelated_across_layers(
    model: LoadedModel, record_finding: Recorder
) -> None:
    expect = model.spec.expect.crosslayer_corr
    roles = crosslayer_correlation(model.anatomy)
    if not roles:
        pytest.skip(f"model {model.name!r}: not applicable, no stack has two attention layers")
    worst = max(roles, key=lambda r: r.max_abs_adjacent)
    finding = Finding(
        model=model.name,
        property="crosslayer_corr",
        statistic="max |cos| of adjacent-layer attention weights",
        value=worst.max_abs_adjacent,
        expected=Expected(None, expect.max_abs, expect.source),
        # The largest role has the smallest sd; report the most permissive (largest) null sd.
        null=Null(max(r.null_sd for r in roles), "analytic sd 1/√n of independent cosines"),
        n=min(r.n for r in roles),
        random_init=model.random_init,
        details={"worst": f"{worst.stack}.{worst.role}", "roles": [r.as_dict() for r in roles]},
    )
    plot = layer_matrices(
        {f"{r.stack}.{r.role}": r.matrix for r in roles}, f"{model.name}: layer × layer cosine"
    )
    record_finding(finding, [Evidence("layer x layer cosine", plot)])
    check(finding)
