"""Unit tests of the representation measures, the relational statistics and the text encoder.

Known answers come from constructions whose statistics follow in closed form (digits on a
circle arc, categories along orthogonal axes) or from a brute-force computation here (scipy
on a materialised bootstrap resample, explicit pair loops), never from the code under test.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from scipy import stats

from terrain.bootstrap import paired_interval, resample_counts
from terrain.measures.categories import category_lift
from terrain.measures.digits import digit_manifold
from terrain.measures.hierarchy import chain_decay, label_lift
from terrain.measures.layer_geometry import (
    layer_geometry,
    participation_ratio,
    random_participation_ratio,
)
from terrain.measures.pairs import sample_pairs, weighted_ranks, weighted_spearman
from terrain.measures.relational import BANDS, band_mask, pair_statistics, relational_alignment
from terrain.measures.representation import mean_pairwise_cosine, weighted_pair_cosine
from terrain.measures.seed_stability import seed_stability
from terrain.text_encoding import (
    NotApplicableError,
    RepresentationCache,
    encode_texts,
    layer_states,
    masked_mean,
    prompt_for,
    require_tokenizer,
    single_token_id,
)

# --- helpers ---------------------------------------------------------------------------


def _unit(x: NDArray[Any]) -> NDArray[np.float64]:
    x = np.asarray(x, dtype=np.float64)
    return np.asarray(x / np.linalg.norm(x, axis=-1, keepdims=True), dtype=np.float64)


def _brute_mean_cos(x: NDArray[Any]) -> float:
    u = _unit(x)
    n = len(u)
    return float(np.mean([u[i] @ u[j] for i in range(n) for j in range(n) if i < j]))


class CharTokenizer:
    """A stand-in tokenizer for the tiny replicas (vocab 512): one id per character.

    [CLS]-like 2 and [SEP]-like 3 around the text, pad 0; `encode` without specials.
    """

    pad_token_id = 0

    def __call__(
        self, texts: list[str], *, add_special_tokens: bool, truncation: bool, max_length: int
    ) -> dict[str, list[list[int]]]:
        rows = []
        for t in texts:
            ids = [4 + (ord(c) % 500) for c in t]
            if add_special_tokens:
                ids = [2, *ids, 3]
            rows.append(ids[:max_length] if truncation else ids)
        return {"input_ids": rows}

    def encode(self, word: str, add_special_tokens: bool = False) -> list[int]:
        return self([word], add_special_tokens=add_special_tokens, truncation=False, max_length=0)[
            "input_ids"
        ][0]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i - 4) if i >= 4 else "" for i in ids)


def _tiny_module(path: Path) -> Any:
    from terrain.checkpoint import Checkpoint
    from terrain.modules import build_module

    return build_module(
        Checkpoint(path, name=path.name), dtype="float32", device="cpu", trust_remote_code=False
    )


# --- digit manifold --------------------------------------------------------------------


def test_digits_on_an_arc_have_the_closed_form_correlation() -> None:
    """Digit i at angle i*delta: cos(i, j) = cos(|i-j| delta), so every statistic is known."""
    delta = 0.25
    angles = np.arange(10) * delta
    vectors = np.stack([np.cos(angles), np.sin(angles), np.zeros(10)], axis=1) * 3.0
    got = digit_manifold(torch.from_numpy(vectors), n_permutations=999, seed=1)
    d = np.array([j - i for i, j in itertools.combinations(range(10), 2)], dtype=float)
    c = np.cos(d * delta)
    assert got.correlation == pytest.approx(float(np.corrcoef(d, c)[0, 1]), abs=1e-12)
    assert got.adjacent_mean == pytest.approx(math.cos(delta), abs=1e-12)
    assert got.nonadjacent_mean == pytest.approx(float(c[d > 1].mean()), abs=1e-12)
    assert got.correlation < -0.9
    # the observed order is (with its reverse) the most negative relabeling
    assert got.mantel_p <= 3 / 1000
    assert got.interval.high < 0


def test_digit_jackknife_matches_a_leave_one_out_loop() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(10, 16)) + np.arange(10)[:, None] * 0.3
    got = digit_manifold(torch.from_numpy(vectors), n_permutations=99)
    u = _unit(vectors)
    loo = []
    for m in range(10):
        keep = [k for k in range(10) if k != m]
        pairs = list(itertools.combinations(keep, 2))
        loo.append(
            np.corrcoef([abs(i - j) for i, j in pairs], [u[i] @ u[j] for i, j in pairs])[0, 1]
        )
    se = math.sqrt(9 / 10 * np.sum((np.array(loo) - np.mean(loo)) ** 2))
    t = stats.t.ppf(0.975, 9)
    assert got.interval.low == pytest.approx(max(-1.0, got.correlation - t * se), abs=1e-12)
    assert got.interval.high == pytest.approx(min(1.0, got.correlation + t * se), abs=1e-12)


def test_random_digits_show_no_ordinal_structure() -> None:
    vectors = torch.from_numpy(np.random.default_rng(0).normal(size=(10, 512)))
    got = digit_manifold(vectors, n_permutations=999)
    assert abs(got.correlation) < 0.5
    assert got.interval.low < 0 < got.interval.high
    assert got.mantel_p > 0.01


def test_digit_manifold_refuses_too_few_items() -> None:
    with pytest.raises(ValueError, match="at least 4 ordered items, got 3"):
        digit_manifold(torch.ones(3, 4))


# --- cosine helpers and categories -----------------------------------------------------


def test_mean_pairwise_cosine_equals_the_pair_loop() -> None:
    x = np.random.default_rng(1).normal(size=(40, 7)) + 0.5
    assert mean_pairwise_cosine(torch.from_numpy(x)) == pytest.approx(_brute_mean_cos(x), abs=1e-6)


def test_weighted_pair_cosine_is_the_resample_without_self_pairs() -> None:
    rng = np.random.default_rng(2)
    u = _unit(rng.normal(size=(6, 5)))
    counts = np.array([[2.0, 0.0, 1.0, 3.0, 0.0, 0.0]])
    items = np.repeat(np.arange(6), counts[0].astype(int))
    pairs = [
        u[items[a]] @ u[items[b]]
        for a in range(len(items))
        for b in range(len(items))
        if a != b and items[a] != items[b]
    ]
    assert weighted_pair_cosine(u, counts)[0] == pytest.approx(float(np.mean(pairs)), abs=1e-12)
    assert weighted_pair_cosine(u, np.ones((1, 6)))[0] == pytest.approx(
        _brute_mean_cos(u), abs=1e-9
    )
    assert math.isnan(weighted_pair_cosine(u, np.array([[6.0, 0, 0, 0, 0, 0]]))[0])


def test_categories_along_orthogonal_axes_have_known_lifts() -> None:
    """Three categories of words at near-identical directions on three orthogonal axes."""
    rng = np.random.default_rng(4)
    dim, vocab = 64, 500
    emb = rng.normal(size=(vocab, dim)) * 0.01
    axes = np.eye(dim)[:3]
    cats: dict[str, list[tuple[str, int]]] = {}
    for k, name in enumerate(("a", "b", "c")):
        ids = list(range(10 * k, 10 * k + 5))
        emb[ids] = axes[k] * 10.0
        cats[name] = [(f"{name}{i}", i) for i in ids]
    cats["short"] = [("s0", 100), ("s1", 101)]  # below min_words: skipped, reported
    got = category_lift(torch.from_numpy(emb), cats, n_requested={"a": 8}, n_bootstrap=200)
    gm = mean_pairwise_cosine(torch.from_numpy(emb))
    assert got.skipped == ("short",)
    assert got.names == ["a", "b", "c"]
    for c in got.categories:
        assert c.intra == pytest.approx(1.0, abs=1e-9)
        assert c.lift == pytest.approx(1.0 - gm, abs=1e-9)
    assert got.categories[0].n_requested == 8
    assert len(got.categories[1].words) == 5
    np.testing.assert_allclose(got.centroid_cosine, np.eye(3), atol=1e-9)
    assert got.mean_lift == pytest.approx(1.0 - gm, abs=1e-9)


def test_category_lift_needs_one_category() -> None:
    with pytest.raises(ValueError, match="no category has 3 or more single-token words"):
        category_lift(torch.ones(5, 3), {"x": [("a", 0)]})


# --- participation ratio and layer geometry ---------------------------------------------


def test_participation_ratio_of_a_known_spectrum() -> None:
    """Rows +-s_k e_k: the covariance is diagonal in s_k^2, so PR = (sum s^2)^2 / sum s^4."""
    s = np.array([3.0, 2.0, 1.0, 1.0, 0.5])
    rows = np.concatenate([np.diag(s), -np.diag(s)])
    expected = float(np.sum(s**2) ** 2 / np.sum(s**4))
    assert participation_ratio(rows) == pytest.approx(expected, rel=1e-12)
    assert participation_ratio(np.outer(np.arange(8.0), np.ones(4))) == pytest.approx(1.0)
    # tall and wide matrices take the two Gram branches; both equal the eigenvalue formula
    for shape in ((30, 12), (8, 12)):
        x = np.random.default_rng(0).normal(size=shape)
        lam = np.linalg.eigvalsh(np.cov(x.T, bias=True))
        assert participation_ratio(x) == pytest.approx(lam.sum() ** 2 / np.sum(lam**2), rel=1e-9)


def test_participation_ratio_of_gaussian_rows_matches_the_analytic_null() -> None:
    x = np.random.default_rng(5).normal(size=(2000, 100))
    assert participation_ratio(x) == pytest.approx(random_participation_ratio(2000, 100), rel=0.03)


def test_layer_geometry_per_text_statistics() -> None:
    """Two texts; text 0: tokens e1, 2 e1, e2 (norms 1, 2, 1); text 1: e3, e3 (cos 1)."""
    e = np.eye(4)
    tokens = np.stack([e[0], 2 * e[0], e[1], e[2], e[2]])
    noise = np.random.default_rng(0).normal(size=(40, 4))  # more rows for the simplex CV
    layer = torch.from_numpy(np.concatenate([tokens, noise]))
    index = torch.tensor([0, 0, 0, 1, 1] + [2] * 40)
    got = layer_geometry([layer, layer * 2], index, 3, n_simplices=50)
    norms0 = np.array([1.0, 2.0, 1.0])
    n2 = np.linalg.norm(noise, axis=1)
    want_norm = np.mean([norms0.mean(), 1.0, n2.mean()])
    assert got.norm_mean[0] == pytest.approx(want_norm, rel=1e-9)
    assert got.norm_mean[1] == pytest.approx(2 * want_norm, rel=1e-9)
    cos_noise = _brute_mean_cos(noise)
    want_cos = np.mean([(1 + 0 + 0) / 3, 1.0, cos_noise])
    assert got.mean_cosine[0] == pytest.approx(want_cos, abs=1e-6)
    assert got.n_layers == 2
    assert got.n_tokens == 45
    assert got.participation_ratio[0] == pytest.approx(got.participation_ratio[1], rel=1e-9)


# --- relational statistics ----------------------------------------------------------------


def test_sample_pairs_has_no_self_pairs_and_an_exact_count() -> None:
    pairs = sample_pairs(3, 5000, np.random.default_rng(0))
    assert pairs.shape == (5000, 2)
    assert not np.any(pairs[:, 0] == pairs[:, 1])
    assert set(map(tuple, pairs.tolist())) == {(i, j) for i in range(3) for j in range(3) if i != j}


def test_weighted_ranks_match_scipy_on_the_materialised_resample() -> None:
    rng = np.random.default_rng(6)
    x = rng.integers(0, 5, size=30).astype(float)  # many ties
    w = resample_counts(30, 4, rng)
    ranks = weighted_ranks(x, w)
    for b in range(4):
        items = np.repeat(np.arange(30), w[b].astype(int))
        want = stats.rankdata(x[items])
        np.testing.assert_allclose(ranks[b][items], want, atol=1e-12)


@pytest.mark.parametrize("levels", [6, 5000])  # few distinct similarities (one-hot path) / many
def test_pair_statistics_match_scipy_on_materialised_resamples(levels: int) -> None:
    rng = np.random.default_rng(levels)
    n = 400
    sim = rng.integers(1, levels + 1, size=n) / levels
    cos_a = np.round(sim * 0.5 + rng.normal(scale=0.2, size=n), 2)  # ties in the cosine too
    cos_b = rng.normal(size=n)
    w = np.vstack([np.ones(n), resample_counts(n, 3, rng)])
    got = pair_statistics({"a": cos_a, "b": cos_b}, {"s": sim}, w)
    for b in range(len(w)):
        items = np.repeat(np.arange(n), w[b].astype(int))
        for name, cos in (("a", cos_a), ("b", cos_b)):
            c, s = cos[items], sim[items]
            assert got[(name, "s", "spearman")][b] == pytest.approx(
                stats.spearmanr(c, s).statistic, abs=1e-6
            )
            assert got[(name, "s", "pearson")][b] == pytest.approx(
                stats.pearsonr(c, s).statistic, abs=1e-9
            )
            high, low = s >= 0.25, s < 0.10
            if high.any() and low.any():
                want = c[high].mean() - c[low].mean()
                assert got[(name, "s", "gradient")][b] == pytest.approx(want, abs=1e-9)
            for k, (lo, hi) in enumerate(BANDS):
                mask = band_mask(s, lo, hi)
                if mask.any():
                    assert got[(name, "s", "band", str(k))][b] == pytest.approx(
                        c[mask].mean(), abs=1e-9
                    )


def test_weighted_spearman_reference_agrees_with_scipy() -> None:
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=50), rng.integers(0, 4, size=50)
    assert weighted_spearman(x, y, np.ones((1, 50)))[0] == pytest.approx(
        stats.spearmanr(x, y).statistic, abs=1e-12
    )


def test_relational_alignment_recovers_a_planted_relation() -> None:
    """Vectors whose cosines follow a planted similarity, against random vectors."""
    rng = np.random.default_rng(10)
    n, dim = 200, 32
    groups = rng.integers(0, 4, size=n)
    centres = rng.normal(size=(4, dim)) * 2
    model = centres[groups] + rng.normal(size=(n, dim))
    null = rng.normal(size=(n, dim))
    sim = np.where(groups[:, None] == groups[None, :], 0.5, 0.08)
    got = relational_alignment(model, null, {"s": sim}, n_pairs=3000, n_bootstrap=200)
    assert got.model.correlations["s"].spearman > 0.5
    assert got.null.correlations["s"].spearman_interval.low < 0
    assert got.null.correlations["s"].spearman_interval.high > 0
    assert got.spearman_difference["s"].low > 0.4
    assert got.model.gradient["s"] > 0.3
    kept = [b for b in got.model.bands["s"] if not math.isnan(b.mean)]
    assert {(b.low, b.high) for b in kept} == {(0.5, 0.9), (0.05, 0.1)}  # [0.5, 0.9) holds 0.5


def test_relational_alignment_refuses_mismatched_items() -> None:
    with pytest.raises(ValueError, match="same items, got 5 and 4"):
        relational_alignment(np.ones((5, 2)), np.ones((4, 2)), {"s": np.ones((5, 5))})


def test_chain_decay_of_known_angles() -> None:
    """Each root at angle 0 and its k-th hypernym at angle k * 0.3: cos = cos(0.3 k)."""
    rows = []
    for _ in range(4):
        for k in range(4):
            rows.append([math.cos(0.3 * k), math.sin(0.3 * k)])
    vectors = np.array(rows)
    roots = np.arange(4) * 4
    chains = np.stack([roots + k for k in (1, 2, 3)], axis=1)
    got = chain_decay(vectors, roots, chains, n_bootstrap=100)
    np.testing.assert_allclose(got.depth_means, np.cos(0.3 * np.arange(1, 4)), atol=1e-7)
    assert got.decay == pytest.approx(math.cos(0.3) - math.cos(0.9), abs=1e-7)
    assert got.interval.low == pytest.approx(got.decay, abs=1e-7)  # no spread between chains


def test_label_lift_equals_the_pair_loop() -> None:
    rng = np.random.default_rng(11)
    labels = ["x"] * 12 + ["y"] * 15 + ["z"] * 3  # z: too small, left out
    vectors = rng.normal(size=(30, 8)) + np.array(
        [[3.0] * 8 if lab == "x" else [0.0] * 8 for lab in labels]
    )
    got = label_lift(vectors, labels, min_size=10, n_bootstrap=100)
    u = _unit(vectors[:27])
    same: list[float] = []
    diff: list[float] = []
    for i, j in itertools.combinations(range(27), 2):
        (same if labels[i] == labels[j] else diff).append(u[i] @ u[j])
    assert got.same == pytest.approx(float(np.mean(same)), abs=1e-9)
    assert got.different == pytest.approx(float(np.mean(diff)), abs=1e-9)
    assert got.lift == pytest.approx(float(np.mean(same) - np.mean(diff)), abs=1e-9)
    assert set(got.per_label) == {"x", "y"}
    assert got.n_items == 27


def test_paired_interval_of_shared_draws() -> None:
    a = np.arange(100.0)
    got = paired_interval(a + 1.0, a)
    assert got.low == pytest.approx(1.0)
    assert got.high == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same shape"):
        paired_interval(a, a[:5])


def test_seed_stability_matches_a_per_seed_loop() -> None:
    rng = np.random.default_rng(12)
    n = 60
    model, null = rng.normal(size=(n, 6)), rng.normal(size=(n, 6))
    sim = np.round(rng.random((n, n)), 1)
    got = seed_stability(
        {"m": model, "n": null}, {"s": sim}, n_seeds=3, n_items=30, n_pairs=200, first_seed=5
    )
    um = _unit(model)
    per_seed = []
    for s in range(3):
        r = np.random.default_rng(5 + s)
        items = r.choice(n, size=30, replace=False)
        pairs = items[sample_pairs(30, 200, r)]
        cos = np.einsum("pd,pd->p", um[pairs[:, 0]], um[pairs[:, 1]])
        per_seed.append(stats.spearmanr(cos, sim[pairs[:, 0], pairs[:, 1]]).statistic)
    summary = got.summaries["m/s/spearman"]
    np.testing.assert_allclose(summary.values, per_seed, atol=1e-9)
    assert summary.mean == pytest.approx(float(np.mean(per_seed)))
    assert summary.sd == pytest.approx(float(np.std(per_seed, ddof=1)))
    assert "m-n/s/spearman" in got.summaries
    assert "m/hypernym_decay" not in got.summaries  # no chains given


def test_seed_stability_chains_and_simplices() -> None:
    """Rows past N serve the chains only; each seed takes half of the chains."""
    rng = np.random.default_rng(13)
    n, extra = 40, 10
    vectors = rng.normal(size=(n + extra, 5))
    roots = np.arange(6)
    rows = np.stack([n + roots, n + roots + 1], axis=1)  # two hypernym steps per chain
    sim = rng.random((n, n))
    got = seed_stability(
        {"m": vectors, "n": -vectors},
        {"s": sim},
        n_seeds=4,
        n_items=20,
        n_pairs=50,
        chains=(roots, rows),
        n_simplices=30,
    )
    u = _unit(vectors)
    cos = np.einsum("cd,ckd->ck", u[roots], u[rows])
    decay = got.summaries["m/hypernym_decay"].values
    assert decay.shape == (4,)
    # every seed's decay is a mean over 3 of the 6 chains
    singles = cos[:, 0] - cos[:, -1]
    for value in decay:
        assert any(
            value == pytest.approx(singles[list(c)].mean(), abs=1e-12)
            for c in itertools.combinations(range(6), 3)
        )
    np.testing.assert_allclose(got.summaries["m-n/hypernym_decay"].values, 0.0, atol=1e-12)
    cv = got.summaries["m/simplex_cv"].values
    assert cv.shape == (4,)
    assert np.all(cv > 0)
    np.testing.assert_allclose(cv, got.summaries["n/simplex_cv"].values)  # volumes of -x


# --- text encoding ------------------------------------------------------------------------


def test_masked_mean_ignores_whatever_padding_holds() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [float("nan"), float("inf")]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(masked_mean(hidden, mask), torch.tensor([[2.0, 3.0]]))
    with pytest.raises(ValueError, match=r"hidden must be \(B, T, D\)"):
        masked_mean(hidden[0], mask)


@pytest.mark.parametrize("replica", ["tiny_bert", "tiny_t5"])
def test_encoding_is_padding_invariant(replica: str, request: pytest.FixtureRequest) -> None:
    """A text's vector is the same alone and in a batch padded to a much longer text."""
    module = _tiny_module(request.getfixturevalue(replica))
    tok = CharTokenizer()
    texts = ["a cat", "a considerably longer definition of something else entirely", "ox"]
    batched = encode_texts(module, tok, texts, batch_size=3)
    alone = torch.cat([encode_texts(module, tok, [t], batch_size=1) for t in texts])
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)
    assert batched.shape == (3, 64)


def test_encoding_cache_round_trips_on_disk(tiny_bert: Path, tmp_path: Path) -> None:
    module = _tiny_module(tiny_bert)
    tok = CharTokenizer()
    cache = RepresentationCache(tmp_path)
    first = encode_texts(module, tok, ["dog", "cat"], fingerprint="f" * 64, cache=cache)
    assert cache.misses == 1
    fresh = RepresentationCache(tmp_path)  # a new process: only the disk copy is left
    again = encode_texts(module, tok, ["dog", "cat"], fingerprint="f" * 64, cache=fresh)
    assert fresh.hits == 1
    torch.testing.assert_close(first, again)
    other = encode_texts(module, tok, ["dog", "cow"], fingerprint="f" * 64, cache=fresh)
    assert fresh.misses == 1
    assert not torch.equal(other, first)


def test_layer_states_keep_only_real_tokens(tiny_bert: Path) -> None:
    module = _tiny_module(tiny_bert)
    got = layer_states(module, CharTokenizer(), ["ab", "abcdef"], batch_size=2)
    assert got.n_layers == module.config.num_hidden_layers + 1
    assert got.text_index.tolist() == [0] * 4 + [1] * 8  # 2 + 2 specials, 6 + 2 specials
    alone = layer_states(module, CharTokenizer(), ["ab"])
    torch.testing.assert_close(got.states[-1][:4], alone.states[-1], rtol=1e-5, atol=1e-5)


def test_prompts_and_tokens() -> None:
    assert prompt_for({"model_type": "t5"}).format("x") == "summarize: x"
    assert prompt_for({"model_type": "bert"}).format("x") == "x"
    tok = CharTokenizer()
    assert single_token_id(tok, "7") == 4 + ord("7")
    assert single_token_id(tok, "77") is None
    with pytest.raises(NotApplicableError, match="has no tokenizer"):
        require_tokenizer(None, "vision-model")
