"""WordNet alignment over seeds (seed notebook §13): the path-similarity Spearman, the
hypernym decay and the definitions' pentachoron CV drawn again from half the synsets,
pairs and chains per seed, beside the same draws of the null; asserted, for pretrained
sentence encoders, as a t interval of the per-seed paired differences that excludes 0.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from terrain.checks import kit
from terrain.checks.text import above_null
from terrain.checks.wordnet import (
    NULL_KIND,
    STABILITY_SIMPLICES,
    WORDNET,
    claims_apply,
)
from terrain.checks.wordnet_study import env_int, study_of
from terrain.measures.seed_stability import seed_stability
from terrain.report.representation_plots import MODEL, NULL, seed_strips

if TYPE_CHECKING:
    from terrain.model import LoadedModel


def stability(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    study = study_of(model)
    n_seeds = env_int("TERRAIN_STABILITY_SEEDS", 5, 2)
    n = study.n_synsets
    result = seed_stability(
        {"model": study.model_vectors, "null": study.null_vectors},
        study.wordnet.similarities,
        n_seeds=n_seeds,
        n_items=max(2, n // 2),
        n_pairs=study.n_pairs,
        chains=(study.wordnet.chain_roots, study.wordnet.chain_rows),
        n_simplices=STABILITY_SIMPLICES,
    )
    s = result.summaries
    measured = s["model/path/spearman"]
    null = s["null/path/spearman"]
    diff = s["model-null/path/spearman"]
    expected = None
    if claims_apply(model):
        expected = above_null(
            measured.mean,
            null.mean,
            diff.interval,
            "claim: over seeds, the path-similarity Spearman exceeds the random-init null's "
            "by a margin whose t interval (per-seed paired differences) excludes 0 "
            f"(difference CI [{diff.interval.low:.4g}, {diff.interval.high:.4g}])",
        )
    finding = kit.finding(
        model,
        "wordnet_stability",
        statistic=(
            f"mean over {n_seeds} seeds of the path-similarity Spearman "
            f"({result.n_items} synsets and {result.n_pairs} pairs per seed)"
        ),
        value=measured.mean,
        expected=kit.band(expect, expected),
        null=kit.Null(null.mean, NULL_KIND),
        interval=measured.interval,
        n=n_seeds,
        seed=0,
        details={"stability": result.as_dict()},
    )
    plots = [
        kit.Evidence(
            f"per-seed {label}",
            partial(
                seed_strips,
                {
                    MODEL: s[f"model/{key}"].values,
                    NULL: s[f"null/{key}"].values,
                    **({"model - null": s[f"model-null/{key}"].values} if paired else {}),
                },
                f"{model.name}: {label} over {n_seeds} seeds",
                label,
            ),
        )
        for key, label, paired in (
            ("path/spearman", "path-similarity Spearman", True),
            ("wup/spearman", "Wu-Palmer Spearman", True),
            ("hypernym_decay", "hypernym decay", True),
            ("simplex_cv", "pentachoron CV of definitions", False),
        )
        if f"model/{key}" in s
    ]
    return kit.Evaluation(finding, tuple(plots))


WORDNET.declare(
    "wordnet_stability",
    "mean over seeds of the path-similarity Spearman",
    "the alignment with WordNet holds over seeds (t interval of paired differences)",
    stability,
    kit.COSINE,
)
