"""Token-embedding geometry and weight tying (seed notebook §2, §3).

Geometry: norms, mean pairwise cosine over a seeded sample of rows, and the covariance
participation ratio per dimension. Analytic nulls: independent isotropic vectors have
mean cosine 0 (sd 1/√dim per pair); an N × D i.i.d. table has PR/dim ≈ 1/(1 + D/N).
The seed's Qwen3.5-0.8B reference (PR/dim 0.535, mean cosine 0.195) is a reference for
that model only. Asserted for random-init models, where the analytic nulls hold.

Tying: every stored copy of the token table and the LM head against what the config
declares (tied: absent or identical; untied: stored and different).
"""

from __future__ import annotations

import math

import pytest

from plugins.assertions import check
from plugins.recording import Recorder
from terrain.battery import battery_of, null_battery_of
from terrain.findings import Expected, Finding, Null
from terrain.measures.embedding import SEED_REFERENCE, EmbeddingGeometry
from terrain.model import LoadedModel
from terrain.report.battery_plots import eigenspectra
from terrain.report.evidence import Evidence

pytestmark = pytest.mark.weights

NULL_KIND = "random-init replica of the same config"
# Random-init band of the mean cosine: the mean over all pairs of n independent isotropic
# vectors has sd about √(2/dim)/n; six of those.
COSINE_BAND_SDS = 6.0


def _geometry(model: LoadedModel) -> tuple[EmbeddingGeometry, EmbeddingGeometry | None]:
    result = battery_of(model)
    if result.embedding is None:
        why = result.embedding_skipped or "no token-embedding table"
        pytest.skip(f"model {model.name!r}: not applicable, {why}")
    return result.embedding, null_battery_of(model).embedding


def test_weight_tying_matches_config(model: LoadedModel, record_finding: Recorder) -> None:
    """Every stored copy of the token table (T5's encoder/decoder embed_tokens) is the shared
    table, and the LM head is absent or identical when the config ties it, stored and
    different when it does not: what the loader will use is what the checkpoint holds."""
    tying = battery_of(model).tying
    if tying is None or not tying.pairs:
        pytest.skip(f"model {model.name!r}: not applicable, one token table and no LM head to tie")
    finding = Finding(
        model=model.name,
        property="weight_tying",
        statistic="share of token-table copies and LM head consistent with the config's tying",
        value=tying.consistent_fraction,
        expected=Expected(1.0, 1.0, "config.json tie_word_embeddings and the loader's tying"),
        null=None,  # a fact of the checkpoint's own layout: no null model applies
        n=len(tying.pairs),
        random_init=model.random_init,
        details=tying.as_dict(),
        tracked={f"{p.table} consistent": float(p.consistent) for p in tying.pairs},
    )
    record_finding(finding)
    check(finding)


def test_embedding_participation_ratio(model: LoadedModel, record_finding: Recorder) -> None:
    """Participation ratio (Σλ)²/Σλ² of the token-embedding covariance, per dimension (seed
    §2: Qwen3.5-0.8B 0.535); analytic null for an i.i.d. table 1/(1 + dim/tokens), asserted
    at random init."""
    geo, null = _geometry(model)
    tol = 0.02 + 1.0 / math.sqrt(geo.dim)
    analytic = geo.null_pr_over_dim
    finding = Finding(
        model=model.name,
        property="embedding_participation_ratio",
        statistic="participation ratio of the token-embedding covariance / dim",
        value=geo.pr_over_dim,
        expected=(
            Expected(analytic * (1 - tol), analytic * (1 + tol), "i.i.d. table: 1/(1 + D/N)")
            if model.random_init
            else None
        ),
        null=Null(null.pr_over_dim, NULL_KIND) if null else Null(analytic, "analytic 1/(1+D/N)"),
        n=geo.n_tokens,
        random_init=model.random_init,
        details={
            **geo.as_dict(),
            "analytic_null_pr_over_dim": analytic,
            "null_geometry": null.as_dict() if null else None,
            "seed_reference": SEED_REFERENCE,
        },
        tracked={
            "participation_ratio": geo.participation_ratio,
            "top_eigenvalue_share": geo.top_eigenvalue_share,
            **{f"dims_for_{k}": float(v) for k, v in geo.dims_for.items()},
        },
    )
    plot = eigenspectra(
        geo.eigenvalues,
        null.eigenvalues if null else geo.eigenvalues[:0],
        title=f"{model.name}: token-embedding covariance eigenvalues",
        ylabel="eigenvalue / total variance",
    )
    record_finding(finding, [Evidence("embedding eigenspectrum against the null", plot)])
    check(finding)


def test_embedding_mean_cosine(model: LoadedModel, record_finding: Recorder) -> None:
    """Mean pairwise cosine of token embeddings over a seeded sample (seed §2: Qwen3.5-0.8B
    0.195); analytic null 0 (sd 1/√dim per pair), asserted at random init."""
    geo, null = _geometry(model)
    band = COSINE_BAND_SDS * math.sqrt(2.0 / geo.dim) / geo.n_sample
    finding = Finding(
        model=model.name,
        property="embedding_mean_cosine",
        statistic="mean pairwise cosine of sampled token embeddings",
        value=geo.mean_cosine,
        expected=(
            Expected(-band, band, "independent isotropic rows: mean 0")
            if model.random_init
            else None
        ),
        null=Null(null.mean_cosine, NULL_KIND) if null else Null(0.0, "analytic: mean 0"),
        interval=geo.cosine_interval,
        n=geo.n_sample,
        seed=geo.seed,
        random_init=model.random_init,
        details={
            "cosine_std": geo.cosine_std,
            "analytic_null_sd_per_pair": geo.null_cosine_sd,
            "norm_mean": geo.norm_mean,
            "norm_std": geo.norm_std,
            "zero_rows_excluded": geo.zero_rows,
            "null_cosine_std": null.cosine_std if null else None,
            "seed_reference": SEED_REFERENCE,
        },
        tracked={
            "cosine_std": geo.cosine_std,
            "norm_mean": geo.norm_mean,
            "norm_std": geo.norm_std,
        },
    )
    record_finding(finding)
    check(finding)
