"""Representation geometry of text models (seed notebook §1, §13): the digit manifold,
semantic-category clustering of the token embedding, and layer-by-layer hidden-state geometry.

Each property runs on the model and on its null, the seeded random-init model of the same
config (its module read through the real model's tokenizer), and reports both. Models
without a tokenizer (vision models, random-init replicas) are not applicable.

What is asserted, for pretrained models only, is a comparison with the null, never a copied
number:
- digit manifold: the correlation of |i - j| with the digits' cosine is negative, with a
  jackknife interval (over digits) below both 0 and the null's correlation. T5-small and
  Qwen3.5 show it in the research (Qwen -0.862). The Mantel permutation p-value is reported
  beside it, not asserted.
- semantic categories: the mean intra-category cosine lift exceeds the null's by a margin
  whose paired bootstrap interval excludes 0.
Layer geometry has no claim that holds independently of the model: measured, not asserted.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from terrain.bootstrap import paired_interval
from terrain.checks import kit
from terrain.checks.text import above_null, text_module, tokenizer_of
from terrain.errors import AnatomyError
from terrain.measures.categories import SEED_CATEGORIES, category_lift
from terrain.measures.digits import digit_manifold
from terrain.measures.layer_geometry import LAYER_SENTENCES, layer_geometry
from terrain.report.representation_plots import (
    MODEL,
    NULL,
    centroid_matrices,
    digit_matrices,
    interval_bars,
    layer_curves,
)
from terrain.text_encoding import layer_states, single_token_id

if TYPE_CHECKING:
    from terrain.model import LoadedModel

NULL_KIND = "random-init null of the same config (seed 1, real tokenizer)"
SEED = 0


def embedding(owner: Any) -> Any:
    """The token table (a model's stored view, a null's generated table)."""
    try:
        return owner.token_table()
    except AnatomyError:
        raise kit.NotApplicableError(f"model {owner.name!r} has no token table") from None


def digits(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    tokenizer = tokenizer_of(model)
    ids = [single_token_id(tokenizer, str(d)) for d in range(10)]
    if any(i is None for i in ids):
        missing = [str(d) for d, i in enumerate(ids) if i is None]
        raise kit.NotApplicableError(f"digits {missing} are not single tokens for {model.name!r}")
    rows = [int(i) for i in ids if i is not None]
    null_model = model.null()
    measured = digit_manifold(embedding(model)[rows], seed=SEED)
    null = digit_manifold(embedding(null_model)[rows], seed=SEED)
    expected = None
    if not model.random_init:
        # CI high end <= min(0, null r)  <=>  r <= min(0, null r) - (CI high - r)
        half = measured.interval.high - measured.correlation
        expected = kit.Expected(
            low=None,
            high=min(0.0, null.correlation) - half,
            source=(
                "claim: the |i-j| correlation's jackknife CI lies below both 0 and the "
                "random-init null's correlation (seed notebook §1: T5-small negative, "
                "Qwen3.5-0.8B -0.862)"
            ),
        )
    finding = kit.finding(
        model,
        "digit_manifold",
        statistic="Pearson correlation of |i-j| with the cosine of digit embeddings i, j",
        value=measured.correlation,
        expected=kit.band(expect, expected),
        null=kit.Null(null.correlation, NULL_KIND),
        interval=measured.interval,
        n=45,
        seed=SEED,
        details={
            "token_ids": rows,
            "measured": measured.as_dict(),
            "null": null.as_dict(),
        },
    )
    plot = partial(
        digit_matrices,
        measured.cosine,
        null.cosine,
        f"{model.name}: digit cosines (r={measured.correlation:.3f}, null {null.correlation:.3f})",
    )
    return kit.Evaluation(finding, (kit.Evidence("digit cosine matrix vs null", plot),))


def categories(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    tokenizer = tokenizer_of(model)
    kept: dict[str, list[tuple[str, int]]] = {}
    for name, words in SEED_CATEGORIES.items():
        pairs = [(w, single_token_id(tokenizer, w)) for w in words]
        kept[name] = [(w, i) for w, i in pairs if i is not None]
    requested = {name: len(words) for name, words in SEED_CATEGORIES.items()}
    null_model = model.null()
    try:
        measured = category_lift(embedding(model), kept, n_requested=requested, seed=SEED)
        null = category_lift(embedding(null_model), kept, n_requested=requested, seed=SEED)
    except ValueError as e:
        raise kit.NotApplicableError(str(e)) from None
    difference = paired_interval(measured.bootstrap, null.bootstrap, what=" over words")
    expected = None
    if not model.random_init:
        expected = above_null(
            measured.mean_lift,
            null.mean_lift,
            difference,
            "claim: the mean intra-category lift exceeds the random-init null's, paired "
            "bootstrap CI of the difference excludes 0 (seed notebook §1 categories)",
        )
    finding = kit.finding(
        model,
        "category_lift",
        statistic=(
            "mean over categories of intra-category cosine minus the vocabulary's mean "
            "pairwise cosine (single-token words)"
        ),
        value=measured.mean_lift,
        expected=kit.band(expect, expected),
        null=kit.Null(null.mean_lift, NULL_KIND),
        interval=measured.interval,
        n=sum(len(c.words) for c in measured.categories),
        seed=SEED,
        details={
            "measured": measured.as_dict(),
            "null": null.as_dict(),
            "difference_interval": difference.as_dict(),
            "words_kept": {c.name: f"{len(c.words)}/{c.n_requested}" for c in measured.categories},
            "skipped_categories": list(measured.skipped),
        },
    )
    names = measured.names
    null_by_name = {c.name: c for c in null.categories}
    bars = partial(
        interval_bars,
        [f"{c.name} ({len(c.words)}/{c.n_requested})" for c in measured.categories],
        {
            MODEL: (
                [c.lift for c in measured.categories],
                [c.interval.low for c in measured.categories],
                [c.interval.high for c in measured.categories],
            ),
            NULL: (
                [null_by_name[n].lift for n in names],
                [null_by_name[n].interval.low for n in names],
                [null_by_name[n].interval.high for n in names],
            ),
        },
        f"{model.name}: intra-category cosine lift over the vocabulary mean (95% CI)",
        "lift",
        reference=0.0,
    )
    centroids = partial(
        centroid_matrices,
        names,
        measured.centroid_cosine,
        null.centroid_cosine,
        f"{model.name}: category centroid cosines",
    )
    return kit.Evaluation(
        finding,
        (
            kit.Evidence("category lift vs null", bars),
            kit.Evidence("centroid cosine matrix", centroids),
        ),
    )


def geometry(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    tokenizer = tokenizer_of(model)
    modules = ((MODEL, text_module(model), model.name), (NULL, None, model.null().name))
    curves = {}
    for label, module, name in modules:
        module = module if module is not None else model.null().module()
        states = layer_states(module, tokenizer, LAYER_SENTENCES, model_name=name)
        curves[label] = layer_geometry(states.states, states.text_index, states.n_texts, seed=SEED)
    measured, null = curves[MODEL], curves[NULL]
    finding = kit.finding(
        model,
        "layer_geometry",
        statistic=(
            "mean within-sentence token cosine at the last layer "
            f"({len(LAYER_SENTENCES)} fixed sentences; curves in details)"
        ),
        value=float(measured.mean_cosine[-1]),
        expected=None,
        null=kit.Null(float(null.mean_cosine[-1]), NULL_KIND),
        n=measured.n_tokens,
        seed=SEED,
        details={
            "measured": measured.as_dict(),
            "null": null.as_dict(),
            "sentences": list(LAYER_SENTENCES),
        },
    )
    plot = partial(
        layer_curves,
        {k: v.as_dict() for k, v in curves.items()},
        f"{model.name}: layer geometry over {measured.n_tokens} tokens of "
        f"{measured.n_texts} sentences",
        random_pr=measured.random_pr,
    )
    return kit.Evaluation(finding, (kit.Evidence("layer curves vs null", plot),))


for _name, _statistic, _claim, _fn, _domain, _gauge in (
    (
        "digit_manifold",
        "Pearson correlation of |i − j| with the cosine of digit embeddings i, j",
        "digit-token cosines fall with |i − j|: the correlation's jackknife CI lies below both "
        "0 and the random-init null's",
        digits,
        kit.COSINE,
        kit.Gauge.INVARIANT,
    ),
    (
        "category_lift",
        "mean intra-category cosine minus the vocabulary's mean pairwise cosine",
        "semantic categories cluster: the lift exceeds the null's, paired bootstrap CI excluding 0",
        categories,
        kit.REAL,
        kit.Gauge.INVARIANT,
    ),
    (
        "layer_geometry",
        "mean within-sentence token cosine at the last layer (curves in details)",
        "per-layer norm, cosine, PR and simplex CV curves beside the random-init null (measured)",
        geometry,
        kit.COSINE,
        kit.Gauge.NONE,
    ),
):
    kit.Theme(
        source="notebook §1",
        tolerance=kit.Tolerance(abs=1e-4),
        gauge=_gauge,
        gauge_note="cosines of token rows are unchanged by a residual rotation"
        if _gauge == kit.Gauge.INVARIANT
        else "",
        kind="text",
    ).declare(_name, _statistic, _claim, _fn, _domain)
