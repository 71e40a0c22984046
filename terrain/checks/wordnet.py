"""WordNet relational alignment (seed notebook §2, §3): do the cosines of a text model's
representations of WordNet definitions follow WordNet's own structure?

For a seeded sample of noun synsets, each definition is encoded with the model's documented
prompt (T5: "summarize: {definition}"; BERT-like encoders and others: the plain definition),
mean-pooled over real tokens only. Measured on random pairs of synsets: Pearson and Spearman
correlation of cosine with WordNet path similarity and with Wu-Palmer similarity, the mean
cosine per similarity band; along first-hypernym chains, the decay of cosine with distance;
by lexicographer file, same-file minus different-file cosine; and all of it again over many
seeds. Everything is also measured on the null (the seeded random-init model of the same
config, seed 1, read through the real tokenizer) on the same pairs, so intervals of the
differences are paired.

Asserted for pretrained sentence encoders, as a comparison with the null: each statistic
exceeds the null's by a margin whose paired 95% interval excludes 0 (causal LMs are
measured, not asserted: `claims_apply`). A trained text encoder places
related concepts closer than its random init does; the research found this for T5-small, and
it holds for all-MiniLM-L6-v2. Models without a tokenizer are not applicable; without the
WordNet corpus every check here reports the missing corpus, naming the fix (`make wordnet`).
They run the whole module: on a CPU within the text budget (terrain/checks/text.py).

Sizes, from the environment: terrain/checks/wordnet_study.py.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from terrain.bootstrap import Interval, paired_interval
from terrain.checks import kit
from terrain.checks.text import above_null
from terrain.checks.wordnet_study import CHAIN_LENGTH, SAMPLE_SEED, study_of
from terrain.measures.hierarchy import ChainDecay, LabelLift, chain_decay, label_lift
from terrain.report.representation_plots import (
    MODEL,
    NULL,
    band_means,
    depth_curves,
    interval_bars,
    similarity_scatter,
)

if TYPE_CHECKING:
    from terrain.model import LoadedModel

NULL_KIND = "random-init null of the same config (seed 1, real tokenizer), same pairs"
STABILITY_SIMPLICES = 500  # per seed, as the research's stability run
SIMILARITY_NAMES = {"path": "WordNet path similarity", "wup": "Wu-Palmer similarity"}


def claims_apply(model: LoadedModel) -> bool:
    """Whether the research's claims bind this model: pretrained, and a sentence encoder.

    A random-init model against another seed makes no claim of training. A causal LM's
    mean-pooled hidden states are not the sentence encodings the research measured (each
    position sees only the tokens before it); they are measured beside the null, and
    compared with their baseline, but not held to the encoders' claim. SmolLM2-135M
    (Q4_1) measured a path Spearman of 0.058 against its null's 0.053 (paired difference
    CI [-0.013, 0.026]): no alignment beyond its random init in that pooling.
    """
    if model.random_init:
        return False
    architectures = model.checkpoint.config.get("architectures") or []
    return not any(str(a).endswith("ForCausalLM") for a in architectures)


def _claim(model: LoadedModel, value: float, null: float, diff: Interval, what: str) -> Any:
    if not claims_apply(model):
        return None
    return above_null(
        value,
        null,
        diff,
        f"claim: {what} exceeds the random-init null's by a margin whose paired 95% "
        f"bootstrap CI excludes 0 (difference CI [{diff.low:.4g}, {diff.high:.4g}])",
    )


def _similarity(
    model: LoadedModel, expect: kit.Expectation | None, similarity: str
) -> kit.Evaluation:
    study = study_of(model)
    cmp = study.alignment
    measured = cmp.model.correlations[similarity]
    null = cmp.null.correlations[similarity]
    diff = cmp.spearman_difference[similarity]
    label = SIMILARITY_NAMES[similarity]
    finding = kit.finding(
        model,
        f"wordnet_{similarity}_spearman",
        statistic=f"Spearman correlation of definition cosine with {label} (noun pairs)",
        value=measured.spearman,
        expected=kit.band(
            expect, _claim(model, measured.spearman, null.spearman, diff, "the Spearman")
        ),
        null=kit.Null(null.spearman, NULL_KIND),
        interval=measured.spearman_interval,
        n=measured.n_pairs,
        seed=SAMPLE_SEED,
        details={
            "measured": measured.as_dict(),
            "null": null.as_dict(),
            "spearman_difference": diff.as_dict(),
            "pearson_difference": cmp.pearson_difference[similarity].as_dict(),
            "n_synsets": study.n_synsets,
            "pairs": "seeded random ordered pairs of distinct sampled synsets",
        },
    )
    plot = partial(
        similarity_scatter,
        cmp.similarities[similarity],
        {MODEL: cmp.model_cosines, NULL: cmp.null_cosines},
        f"{model.name}: cosine vs {label} (Spearman {measured.spearman:.3f}, "
        f"null {null.spearman:.3f})",
        label,
    )
    return kit.Evaluation(finding, (kit.Evidence(f"cosine vs {label}", plot),))


def path_spearman(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    return _similarity(model, expect, "path")


def wup_spearman(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    return _similarity(model, expect, "wup")


def band_gradient(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    study = study_of(model)
    cmp = study.alignment
    value = cmp.model.gradient["path"]
    null = cmp.null.gradient["path"]
    diff = cmp.gradient_difference["path"]
    finding = kit.finding(
        model,
        "wordnet_band_gradient",
        statistic=(
            "mean cosine of pairs with path similarity >= 0.25 minus pairs below 0.10 "
            "(the research's high and low bands)"
        ),
        value=value,
        expected=kit.band(
            expect, _claim(model, value, null, diff, "the high-minus-low band gradient")
        ),
        null=kit.Null(null, NULL_KIND),
        interval=cmp.model.gradient_interval["path"],
        n=study.n_pairs,
        seed=SAMPLE_SEED,
        details={
            "bands": {
                MODEL: [b.as_dict() for b in cmp.model.bands["path"]],
                NULL: [b.as_dict() for b in cmp.null.bands["path"]],
            },
            "wup_bands": {
                MODEL: [b.as_dict() for b in cmp.model.bands["wup"]],
                NULL: [b.as_dict() for b in cmp.null.bands["wup"]],
            },
            "difference_interval": diff.as_dict(),
        },
    )
    plots = [
        kit.Evidence(
            f"band means ({SIMILARITY_NAMES[s]})",
            partial(
                band_means,
                {
                    MODEL: [b.as_dict() for b in cmp.model.bands[s]],
                    NULL: [b.as_dict() for b in cmp.null.bands[s]],
                },
                f"{model.name}: mean cosine per {SIMILARITY_NAMES[s]} band",
                SIMILARITY_NAMES[s],
            ),
        )
        for s in ("path", "wup")
    ]
    return kit.Evaluation(finding, tuple(plots))


def hypernym_decay(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    study = study_of(model)
    wn = study.wordnet
    if len(wn.chain_roots) < 2:
        raise kit.NotApplicableError(f"only {len(wn.chain_roots)} hypernym chains in the sample")
    decays: dict[str, ChainDecay] = {
        label: chain_decay(vectors, wn.chain_roots, wn.chain_rows, seed=SAMPLE_SEED)
        for label, vectors in ((MODEL, study.model_vectors), (NULL, study.null_vectors))
    }
    measured, null = decays[MODEL], decays[NULL]
    diff = paired_interval(measured.bootstrap, null.bootstrap, what=" over chains")
    finding = kit.finding(
        model,
        "hypernym_decay",
        statistic=(
            f"mean cosine of a synset's definition with its 1st minus its {CHAIN_LENGTH}th "
            "first-hypernym's"
        ),
        value=measured.decay,
        expected=kit.band(expect, _claim(model, measured.decay, null.decay, diff, "the decay")),
        null=kit.Null(null.decay, NULL_KIND),
        interval=measured.interval,
        n=measured.n_chains,
        seed=SAMPLE_SEED,
        details={
            "measured": measured.as_dict(),
            "null": null.as_dict(),
            "difference_interval": diff.as_dict(),
        },
    )
    plot = partial(
        depth_curves,
        {k: v.as_dict() for k, v in decays.items()},
        f"{model.name}: cosine along {measured.n_chains} hypernym chains",
    )
    return kit.Evaluation(finding, (kit.Evidence("hypernym chain decay", plot),))


def lexname_lift(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    study = study_of(model)
    n = study.n_synsets
    labels = study.wordnet.lexnames
    try:
        lifts: dict[str, LabelLift] = {
            label: label_lift(vectors[:n], labels, seed=SAMPLE_SEED)
            for label, vectors in ((MODEL, study.model_vectors), (NULL, study.null_vectors))
        }
    except ValueError as e:
        raise kit.NotApplicableError(str(e)) from None
    measured, null = lifts[MODEL], lifts[NULL]
    diff = paired_interval(measured.bootstrap, null.bootstrap, what=" over synsets")
    finding = kit.finding(
        model,
        "lexname_lift",
        statistic=(
            "mean cosine of same-lexicographer-file synset pairs minus different-file pairs "
            "(files with >= 10 sampled synsets)"
        ),
        value=measured.lift,
        expected=kit.band(
            expect, _claim(model, measured.lift, null.lift, diff, "the same-file lift")
        ),
        null=kit.Null(null.lift, NULL_KIND),
        interval=measured.interval,
        n=measured.n_items,
        seed=SAMPLE_SEED,
        details={
            "measured": measured.as_dict(),
            "null": null.as_dict(),
            "difference_interval": diff.as_dict(),
        },
    )
    files = sorted(measured.per_label, key=lambda k: -measured.per_label[k][0])
    plot = partial(
        interval_bars,
        [f"{f.split('.')[-1]} ({measured.per_label[f][0]})" for f in files],
        {
            MODEL: ([measured.per_label[f][1] - measured.different for f in files],) * 3,
            NULL: ([null.per_label[f][1] - null.different for f in files],) * 3,
        },
        f"{model.name}: intra-file cosine minus different-file cosine, per lexicographer file",
        "lift",
        reference=0.0,
    )
    return kit.Evaluation(finding, (kit.Evidence("lexicographer-file clustering", plot),))


# The WordNet properties' one source, tolerance and gauge (wordnet_stability.py's too).
WORDNET = kit.Theme(
    source="notebook §2, §3, §13",
    tolerance=kit.Tolerance(abs=1e-4),
    gauge=kit.Gauge.NONE,
    kind="text",
)


for _name, _statistic, _claim_text, _fn, _domain in (
    (
        "wordnet_path_spearman",
        "Spearman correlation of definition cosine with WordNet path similarity",
        "cosines of encoded WordNet definitions follow path similarity, better than the null",
        path_spearman,
        kit.COSINE,
    ),
    (
        "wordnet_wup_spearman",
        "Spearman correlation of definition cosine with Wu-Palmer similarity",
        "cosines of encoded WordNet definitions follow Wu-Palmer similarity, better than the null",
        wup_spearman,
        kit.COSINE,
    ),
    (
        "wordnet_band_gradient",
        "mean cosine of high- minus low-similarity pairs",
        "the mean cosine rises from the low to the high path-similarity band, more than the null's",
        band_gradient,
        kit.REAL,
    ),
    (
        "hypernym_decay",
        "cosine with the 1st minus the 5th first-hypernym",
        "cosine decays along first-hypernym chains, more than the null's",
        hypernym_decay,
        kit.REAL,
    ),
    (
        "lexname_lift",
        "same- minus different-lexicographer-file cosine",
        "definitions cluster by lexicographer file, more than the null's",
        lexname_lift,
        kit.REAL,
    ),
):
    WORDNET.declare(_name, _statistic, _claim_text, _fn, _domain)
