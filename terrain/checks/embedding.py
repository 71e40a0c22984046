"""Token-embedding geometry, weight tying and the pentachoron CV (seed notebook §1–3).

Geometry: norms, mean pairwise cosine over a seeded sample of rows, and the covariance
participation ratio per dimension. Analytic nulls: independent isotropic vectors have
mean cosine 0 (sd 1/√dim per pair); an N × D i.i.d. table has PR/dim ≈ 1/(1 + D/N).
The seed's Qwen3.5-0.8B reference (PR/dim 0.535, mean cosine 0.195) is a reference for
that model only. Asserted for random-init models, where the analytic nulls hold.

Tying: every stored copy of the token table and the LM head against what the config
declares (tied: absent or identical; untied: stored and different).

Pentachoron CV: the CV of Cayley–Menger volumes of seeded random 5-token simplices; the
band is per model (the CV of random points falls with dimension: ≈0.29 at D≈24,
0.20–0.23 at D≈40–48, <0.07 at D≥512), so the seed's band is the expectation of the
seed's own models only. Its null is the same measure on Gaussian points of the same
dimension and std.
"""

from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING, Annotated

import torch
from pydantic import Field

from terrain.anatomy import TensorRole
from terrain.battery.reader import Reader
from terrain.checks import kit
from terrain.errors import AnatomyError
from terrain.measures.embedding import SEED_REFERENCE, EmbeddingGeometry, covariance_eigenvalues
from terrain.measures.simplex import SimplexCV, simplex_cv
from terrain.measures.simplex_null import gaussian_null_cv
from terrain.measures.sparsity import count_tensor
from terrain.report.battery_plots import eigenspectra
from terrain.report.plots import volume_histogram

if TYPE_CHECKING:
    from terrain.model import LoadedModel

# Random-init band of the mean cosine: the mean over all pairs of n independent isotropic
# vectors has sd about √(2/dim)/n; six of those.
COSINE_BAND_SDS = 6.0
ANALYTIC = "analytic law of an i.i.d. table"
ROTATION_NOTE = (
    "a residual rotation R maps every token row x to R·x: norms, pairwise cosines, the "
    "covariance spectrum and simplex volumes are unchanged; per-coordinate statistics are not"
)


def _geometry(model: LoadedModel) -> EmbeddingGeometry:
    result = model.battery()
    if result.embedding is None:
        why = result.embedding_skipped or "no token-embedding table"
        raise kit.NotApplicableError(f"model {model.name!r}: {why}")
    return result.embedding


def _null_geometry(model: LoadedModel) -> EmbeddingGeometry | None:
    return model.null_batteries()[0].embedding


def weight_tying(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    tying = model.battery().tying
    if tying is None or not tying.pairs:
        raise kit.NotApplicableError(f"model {model.name!r}: one token table and no LM head to tie")
    default = kit.Expected(1.0, 1.0, "config.json tie_word_embeddings and the loader's tying")
    finding = kit.finding(
        model,
        "weight_tying",
        value=tying.consistent_fraction,
        expected=kit.band(expect, default),
        null=None,  # a fact of the checkpoint's own layout: no null model applies
        n=len(tying.pairs),
        details=tying.as_dict(),
        tracked={f"{p.table} consistent": float(p.consistent) for p in tying.pairs},
    )
    return kit.Evaluation(finding)


def _geometry_null(model: LoadedModel, statistic: str, analytic: float, what: str) -> kit.Null:
    def of(b: kit.BatteryResult) -> float | None:
        return None if b.embedding is None else float(getattr(b.embedding, statistic))

    sampled = kit.null_of(model, of)
    return sampled if sampled is not None else kit.Null(analytic, f"{ANALYTIC}: {what}")


def participation_ratio(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    geo = _geometry(model)
    null = _null_geometry(model)
    tol = 0.02 + 1.0 / math.sqrt(geo.dim)
    analytic = geo.null_pr_over_dim
    default = (
        kit.Expected(analytic * (1 - tol), analytic * (1 + tol), "i.i.d. table: 1/(1 + D/N)")
        if model.random_init
        else None
    )
    finding = kit.finding(
        model,
        "embedding_participation_ratio",
        value=geo.pr_over_dim,
        expected=kit.band(expect, default),
        null=_geometry_null(model, "pr_over_dim", analytic, "1/(1+D/N)"),
        n=geo.n_tokens,
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
    plot = partial(
        eigenspectra,
        geo.eigenvalues,
        null.eigenvalues if null else geo.eigenvalues[:0],
        title=f"{model.name}: token-embedding covariance eigenvalues",
        ylabel="eigenvalue / total variance",
    )
    return kit.Evaluation(
        finding, (kit.Evidence("embedding eigenspectrum against the null", plot),)
    )


def mean_cosine(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    geo = _geometry(model)
    null = _null_geometry(model)
    width = COSINE_BAND_SDS * math.sqrt(2.0 / geo.dim) / geo.n_sample
    default = (
        kit.Expected(-width, width, "independent isotropic rows: mean 0")
        if model.random_init
        else None
    )
    finding = kit.finding(
        model,
        "embedding_mean_cosine",
        value=geo.mean_cosine,
        expected=kit.band(expect, default),
        null=_geometry_null(model, "mean_cosine", 0.0, "mean 0"),
        interval=geo.cosine_interval,
        n=geo.n_sample,
        seed=geo.seed,
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
    return kit.Evaluation(finding)


class SimplexCVExpect(kit.Expectation):
    """The CV band, and the sample it is measured on."""

    n_simplices: Annotated[int, Field(ge=10, le=10_000_000)] = 1000
    seed: int = 0


def _table(model: LoadedModel) -> tuple[TensorRole, torch.Tensor]:
    """The token table as stored (a view of the memory map where the source has one): the
    CV reads only its sampled rows, so a 7B model's table is never converted whole."""
    try:
        entry = model.anatomy.token_embedding()
    except AnatomyError:
        raise kit.NotApplicableError(
            f"model {model.name!r} has no token embedding (no text input)"
        ) from None
    source = model.anatomy.source
    stored = getattr(source, "stored", None)
    table = entry.take(stored(entry.tensor)) if stored else model.anatomy.read(entry)
    return entry, table.to(model.device)


def _table_std(model: LoadedModel, entry: TensorRole) -> float:
    """The table's sd (ddof 1, as torch.std), from exact float64 tallies of its row chunks
    (the table is read chunk by chunk, never converted whole)."""
    counts = count_tensor(Reader(model.anatomy.source).chunks(entry), (0.1,))
    return math.sqrt(counts.m2 / (counts.n - 1))


def _covariance_matched(
    model: LoadedModel, table: torch.Tensor, std: float, n: int, seed: int
) -> SimplexCV:
    """The CV of Gaussian points with the token table's own covariance spectrum (read from
    the table alone, in row chunks: no other tensor of the model is needed)."""
    dim = int(table.shape[1])
    eigenvalues = covariance_eigenvalues(table)
    return gaussian_null_cv(
        dim, std, n_simplices=n, seed=seed, device=model.device, eigenvalues=eigenvalues
    )


def _matched_text(matched: SimplexCV) -> str:
    return (
        f"; covariance-matched Gaussian (the embedding's covariance): {matched.value:.4g} "
        "(isotropic vs matched: anisotropy; matched vs value: structure beyond covariance)"
    )


def pentachoron_cv(model: LoadedModel, expect: SimplexCVExpect | None) -> kit.Evaluation:
    n = expect.n_simplices if expect else 1000
    seed = expect.seed if expect else 0
    entry, table = _table(model)
    measured = simplex_cv(table, n_simplices=n, seed=seed)
    std = _table_std(model, entry)
    dim = int(table.shape[1])
    null = gaussian_null_cv(dim, std, n_simplices=n, seed=seed, device=model.device)
    matched = _covariance_matched(model, table, std, n, seed)
    finding = kit.finding(
        model,
        "simplex_cv",
        statistic="CV of 4-simplex volumes of the token embedding",
        value=measured.value,
        expected=kit.band(expect),
        null=kit.Null(
            null.value, f"Gaussian points, D={dim}, std={std:.3g}" + _matched_text(matched)
        ),
        interval=measured.interval,
        n=measured.n_valid,
        seed=seed,
        details={
            "tensor": entry.tensor,
            "measured": measured.as_dict(),
            "null": null.as_dict(),
            # same covariance as the embedding: iso − matched is the anisotropy's effect,
            # matched − measured what lies beyond the covariance (clusters, tails)
            "null_covariance_matched": matched.as_dict(),
        },
    )
    plot = partial(
        volume_histogram,
        measured.volumes,
        null.volumes,
        f"{model.name}: simplex volumes (N={measured.n_valid})",
    )
    return kit.Evaluation(finding, (kit.Evidence("simplex volumes vs null", plot),))


kit.declare(
    kit.Property(
        name="weight_tying",
        statistic="share of token-table copies and LM head consistent with the config's tying",
        claim="every stored copy of the token table is the shared table, and the LM head is "
        "absent or identical when the config ties it, stored and different when it does not",
        source="config.json tie_word_embeddings and the loader's tying",
        version=1,
        tolerance=kit.Tolerance(abs=0.0),
        domain=kit.FRACTION,
        gauge=kit.Gauge.NONE,
        kind="weights",
        evaluate=weight_tying,
    )
)
# The token table's rotation-invariant statistics.
TABLE = kit.Theme(
    source="seed notebook §2",
    tolerance=kit.Tolerance(abs=0.01),
    gauge=kit.Gauge.INVARIANT,
    gauge_note=ROTATION_NOTE,
    kind="weights",
)
TABLE.declare(
    "embedding_participation_ratio",
    "participation ratio of the token-embedding covariance / dim",
    "participation ratio (Σλ)²/Σλ² of the token-embedding covariance per dimension; "
    "i.i.d. null 1/(1 + dim/tokens), asserted at random init",
    participation_ratio,
    kit.FRACTION,
    source="seed notebook §2 (Qwen3.5-0.8B: 0.535)",
)
TABLE.declare(
    "embedding_mean_cosine",
    "mean pairwise cosine of sampled token embeddings",
    "mean pairwise cosine of token embeddings over a seeded sample; analytic null 0 "
    "(sd 1/√dim per pair), asserted at random init",
    mean_cosine,
    kit.COSINE,
    source="seed notebook §2 (Qwen3.5-0.8B: 0.195)",
    # Sampled: within its interval; its exact companions (norms, cosine sd) to rounding,
    # which moves with the summation order of the linear-algebra library.
    tolerance=kit.Tolerance(abs=1e-9),
)
TABLE.declare(
    "simplex_cv",
    "CV of Cayley–Menger volumes of N seeded random 5-token simplices",
    "the CV of 4-simplex volumes of the token embedding lies in the model's band",
    pentachoron_cv,
    kit.NONNEGATIVE,
    SimplexCVExpect,
    source="seed notebook §1: 0.20–0.23 for T5-small (the seed's own models only)",
    # Sampled: compared within the combined confidence interval, plus this margin.
    tolerance=kit.Tolerance(abs=0.0),
)
