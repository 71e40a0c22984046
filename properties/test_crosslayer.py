"""Near-zero correlation of attention weights across layers (seed notebook §4)."""

from __future__ import annotations

import pytest

from plugins.assertions import check
from plugins.recording import Recorder
from terrain.findings import Expected, Finding, Null
from terrain.measures.crosslayer import RoleCorrelation, crosslayer_correlation
from terrain.model import LoadedModel
from terrain.report.evidence import Evidence
from terrain.report.plots import layer_matrices

pytestmark = pytest.mark.weights

NOISE_FLOOR_SD = 5.0


def test_attention_weights_are_uncorrelated_across_layers(
    model: LoadedModel, record_finding: Recorder
) -> None:
    expect = model.spec.expect.crosslayer_corr
    roles = crosslayer_correlation(model.anatomy)
    if not roles:
        pytest.skip(f"model {model.name!r}: not applicable, no stack has two attention layers")

    # Below ~5 null sd (1/sqrt(n)) a cosine cannot be told from 0, so small models get the
    # noise floor as their bound; large ones the configured max_abs.
    def bound(r: RoleCorrelation) -> float:
        return max(expect.max_abs, NOISE_FLOOR_SD * r.null_sd)

    worst = max(roles, key=lambda r: r.max_abs_adjacent / bound(r))
    source = (
        f"{expect.source or 'near-zero cross-layer correlation'}; "
        f"bound max({expect.max_abs:g}, {NOISE_FLOOR_SD:g}/sqrt(n))"
    )
    finding = Finding(
        model=model.name,
        property="crosslayer_corr",
        statistic=f"max |cos| of adjacent-layer attention weights ({worst.stack}.{worst.role})",
        value=worst.max_abs_adjacent,
        expected=Expected(None, bound(worst), source),
        null=Null(worst.null_sd, "analytic sd 1/√n of independent cosines"),
        n=worst.n,
        random_init=model.random_init,
        details={"worst": f"{worst.stack}.{worst.role}", "roles": [r.as_dict() for r in roles]},
        tracked={f"{r.stack}.{r.role}": r.max_abs_adjacent for r in roles},
    )
    plot = layer_matrices(
        {f"{r.stack}.{r.role}": r.matrix for r in roles}, f"{model.name}: layer × layer cosine"
    )
    record_finding(finding, [Evidence("layer x layer cosine", plot)])
    check(finding)
