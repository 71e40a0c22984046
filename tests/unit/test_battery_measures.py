"""The battery's measures against values derived independently of their implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from terrain.measures.embedding import embedding_geometry, random_pr_over_dim
from terrain.measures.mlp import column_norms, dead_neurons, row_norms
from terrain.measures.norms import gain_directions, gain_offset, gain_stats
from terrain.measures.position_bias import bucket_layout, position_bias_profiles, t5_bucket
from terrain.measures.qk import qk_layer
from terrain.measures.spectra import (
    marchenko_pastur,
    matrix_spectra,
    smaller_gram,
    stable_rank_tolerance,
)
from terrain.measures.tying import tensor_digest, tying_report


def _orthogonal(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q: torch.Tensor = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64)).Q
    return q


def _with_singular_values(rows: int, cols: int, values: list[float]) -> torch.Tensor:
    u = _orthogonal(rows, 1)[:, : len(values)]
    v = _orthogonal(cols, 2)[:, : len(values)]
    return u @ torch.diag(torch.tensor(values, dtype=torch.float64)) @ v.T


# --- spectra ------------------------------------------------------------------------------


@pytest.mark.parametrize(("rows", "cols"), [(7, 5), (5, 9)])
def test_spectra_of_known_singular_values(rows: int, cols: int) -> None:
    s = [5.0, 4.0, 3.0, 2.0, 1.0]
    result = matrix_spectra([_with_singular_values(rows, cols, s)])
    assert result.n == 5
    assert result.stable_rank[0] == pytest.approx(55 / 25)
    assert result.participation_ratio[0] == pytest.approx(15**2 / 55)  # seed: (Σσ)²/Σσ²
    assert result.eigen_participation_ratio[0] == pytest.approx(55**2 / (625 + 256 + 81 + 16 + 1))
    assert result.active_fraction[0] == 1.0
    assert result.rank90[0] == 4  # cumulative σ share: .33 .60 .80 .93
    assert result.condition[0] == pytest.approx(5.0)
    assert result.sv_max[0] == pytest.approx(5.0)
    np.testing.assert_allclose(result.normalized[0], np.array(s) / 5, rtol=1e-6)


def test_rank_k_matrix_has_zero_singular_values_and_infinite_condition() -> None:
    g = torch.Generator().manual_seed(3)
    w = torch.randn(40, 3, generator=g) @ torch.randn(3, 30, generator=g)
    result = matrix_spectra([w])
    assert result.active_fraction[0] == pytest.approx(3 / 30)
    assert math.isinf(result.condition[0])
    assert result.rank90[0] <= 3


def test_orthogonal_matrix_is_perfectly_conditioned() -> None:
    result = matrix_spectra([_orthogonal(64, 4).to(torch.float32)])
    assert result.condition[0] == pytest.approx(1.0, abs=1e-5)
    assert result.stable_rank[0] == pytest.approx(64, rel=1e-5)
    assert result.participation_ratio[0] == pytest.approx(64, rel=1e-5)


def test_gram_takes_the_smaller_side_and_batches_agree() -> None:
    g = torch.Generator().manual_seed(5)
    tall, wide = torch.randn(50, 20, generator=g), torch.randn(20, 50, generator=g)
    assert smaller_gram(tall).shape == (20, 20)
    assert smaller_gram(wide).shape == (20, 20)
    assert smaller_gram(tall).dtype == torch.float64
    both = matrix_spectra([tall, tall * 2])
    one = matrix_spectra([tall])
    np.testing.assert_allclose(both.stable_rank, [one.stable_rank[0]] * 2, rtol=1e-12)
    np.testing.assert_allclose(both.sv_max[1], 2 * one.sv_max[0], rtol=1e-12)


def test_gaussian_matrix_matches_marchenko_pastur() -> None:
    g = torch.Generator().manual_seed(6)
    rows, cols = 800, 400
    w = torch.randn(rows, cols, generator=g)
    measured = matrix_spectra([w])
    mp = marchenko_pastur(rows, cols)
    assert mp.ratio == 0.5
    assert mp.stable_rank == pytest.approx(400 / (1 + math.sqrt(0.5)) ** 2)
    assert mp.eigen_participation_ratio == pytest.approx(400 / 1.5)
    assert mp.condition == pytest.approx((1 + math.sqrt(0.5)) / (1 - math.sqrt(0.5)))
    tol = stable_rank_tolerance(cols)
    assert measured.stable_rank[0] / mp.stable_rank == pytest.approx(1.0, abs=tol)
    assert measured.participation_ratio[0] / mp.participation_ratio == pytest.approx(1, abs=0.01)
    assert measured.eigen_participation_ratio[0] / mp.eigen_participation_ratio == pytest.approx(
        1, abs=0.02
    )
    assert measured.rank90[0] == pytest.approx(mp.rank90, rel=0.02)
    assert measured.condition[0] == pytest.approx(mp.condition, rel=0.1)


def test_marchenko_pastur_square_case() -> None:
    """Quarter-circle law of σ/√n on [0, 2]: E[σ] = 8/(3π), so PR/n = (8/(3π))²."""
    mp = marchenko_pastur(300, 300)
    assert mp.condition is None
    assert mp.stable_rank == pytest.approx(300 / 4)
    assert mp.participation_ratio / 300 == pytest.approx((8 / (3 * math.pi)) ** 2, rel=1e-6)
    # σ_max/√n = 2, so P(σ < 0.01·σ_max) = P(x < 0.02), density √(4−x²)/π ≈ 2/π near 0
    assert 1 - mp.active_fraction == pytest.approx(0.02 * 2 / math.pi, rel=0.01)


# --- QK forms -----------------------------------------------------------------------------


def _heads(n_heads: int, d_head: int, d_model: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n_heads * d_head, d_model, generator=g, dtype=torch.float64)


def test_random_product_is_balanced_at_one_half() -> None:
    """The seed's "0.500 balance" is what a random product gives: W_K → −W_K swaps signs."""
    counts = []
    for seed in range(10):
        q, k = _heads(4, 32, 128, seed), _heads(4, 32, 128, 100 + seed)
        layer = qk_layer(q, k, n_heads=4, n_kv_heads=4, d_head=32)
        counts.append(layer.balance)
        assert abs(layer.balance - 0.5) <= 4 / 128
    assert np.mean(counts) == pytest.approx(0.5, abs=1 / 128)


def test_residual_inertia_is_forced_for_full_rank_heads_of_any_weights() -> None:
    # Structured, correlated weights: still exactly d_head positive, d_head negative.
    q = _heads(3, 8, 48, 1)
    k = 0.9 * q + 0.1 * _heads(3, 8, 48, 2)
    layer = qk_layer(q, k, n_heads=3, n_kv_heads=3, d_head=8)
    np.testing.assert_array_equal(layer.residual_positive, [8, 8, 8])
    np.testing.assert_array_equal(layer.residual_negative, [8, 8, 8])
    np.testing.assert_array_equal(layer.residual_balance, [0.5, 0.5, 0.5])
    assert layer.rank_deficient_heads == 0
    assert np.all(layer.residual_positive_mass > 0.8)  # the mass is free to move


def test_negative_control_rank_deficient_head_breaks_the_balance() -> None:
    """W_K^h = W_Q^h makes [W_Q^h; W_K^h] rank d_head: the form is PSD, balance 1."""
    q = _heads(2, 8, 48, 3)
    k = q.clone()
    k[8:] = _heads(1, 8, 48, 4)  # head 1 stays generic
    layer = qk_layer(q, k, n_heads=2, n_kv_heads=2, d_head=8)
    assert layer.residual_balance[0] == 1.0
    assert layer.residual_balance[1] == 0.5
    assert layer.rank_deficient_heads == 1
    assert layer.residual_positive_mass[0] == pytest.approx(1.0)
    assert layer.residual_symmetry_deviation[0] == pytest.approx(0.0, abs=1e-12)
    assert qk_layer(q, -q, n_heads=2, n_kv_heads=2, d_head=8).residual_positive_mass[
        0
    ] == pytest.approx(0.0)


def test_residual_form_matches_the_explicit_d_model_matrix() -> None:
    d_head, d_model = 6, 20
    q, k = _heads(2, d_head, d_model, 5), _heads(2, d_head, d_model, 6)
    layer = qk_layer(q, k, n_heads=2, n_kv_heads=2, d_head=d_head)
    for h in range(2):
        b = q[h * d_head : (h + 1) * d_head].T @ k[h * d_head : (h + 1) * d_head]
        ev = torch.linalg.eigvalsh(0.5 * (b + b.T))
        tol = 1e-10 * ev.abs().max()
        assert int((ev > tol).sum()) == layer.residual_positive[h]
        assert int((ev < -tol).sum()) == layer.residual_negative[h]
        mass = float(ev.clamp_min(0).sum() / ev.abs().sum())
        assert layer.residual_positive_mass[h] == pytest.approx(mass, rel=1e-10)
        dev = float(torch.linalg.norm(b - b.T) / torch.linalg.norm(b))
        assert layer.residual_symmetry_deviation[h] == pytest.approx(dev, rel=1e-10)
        sv = torch.linalg.svdvals(b)
        assert layer.residual_stable_rank[h] == pytest.approx(
            float((sv**2).sum() / sv[0] ** 2), rel=1e-10
        )


def test_residual_form_is_gauge_invariant_but_the_seed_form_is_not() -> None:
    """W_Q^h → A·W_Q^h, W_K^h → A^{-T}·W_K^h keeps every score: the residual form is unchanged,
    the symmetric part of the seed's head-space form is not (A not orthogonal)."""
    d_head, d_model = 8, 40
    q, k = _heads(1, d_head, d_model, 7), _heads(1, d_head, d_model, 8)
    g = torch.Generator().manual_seed(9)
    a = torch.eye(d_head, dtype=torch.float64) + 0.8 * torch.randn(
        d_head, d_head, generator=g, dtype=torch.float64
    )
    q2, k2 = a @ q, torch.linalg.inv(a).T @ k
    torch.testing.assert_close(q2.T @ k2, q.T @ k)
    before = qk_layer(q, k, n_heads=1, n_kv_heads=1, d_head=d_head)
    after = qk_layer(q2, k2, n_heads=1, n_kv_heads=1, d_head=d_head)
    np.testing.assert_allclose(after.residual_positive_mass, before.residual_positive_mass)
    np.testing.assert_allclose(after.residual_stable_rank, before.residual_stable_rank)
    assert after.symmetry_deviation != pytest.approx(before.symmetry_deviation, rel=1e-3)


def test_grouped_query_heads_repeat_their_key_head() -> None:
    n_heads, n_kv, d_head, d_model = 4, 2, 8, 64
    q, k = _heads(n_heads, d_head, d_model, 10), _heads(n_kv, d_head, d_model, 11)
    expanded = k.reshape(n_kv, d_head, d_model).repeat_interleave(2, dim=0).reshape(-1, d_model)
    gqa = qk_layer(q, k, n_heads=n_heads, n_kv_heads=n_kv, d_head=d_head)
    full = qk_layer(q, expanded, n_heads=n_heads, n_kv_heads=n_heads, d_head=d_head)
    assert gqa.n_positive == full.n_positive
    np.testing.assert_allclose(gqa.residual_positive_mass, full.residual_positive_mass)
    # rank ≤ 2·n_kv·d_head = 32 of 32: the balance over nonzero eigenvalues is 0.5
    assert gqa.n_positive + gqa.n_negative == 32
    assert gqa.balance == 0.5
    with pytest.raises(ValueError, match="do not split"):
        qk_layer(q, k, n_heads=n_heads, n_kv_heads=n_heads, d_head=d_head)


# --- MLP ----------------------------------------------------------------------------------


def test_constructed_dead_and_weak_neurons() -> None:
    g = torch.Generator().manual_seed(12)
    up, down = torch.randn(16, 32, generator=g), torch.randn(32, 16, generator=g)
    up[3] = 0.0  # dead: no input
    down[:, 7] *= 1e-3  # dead: (almost) no output
    up[9] *= 0.05  # weak: 5% of the mean
    layer = dead_neurons(row_norms(up), column_norms(down))
    assert layer.dead == 2
    assert layer.weak == 3
    assert not layer.gated
    assert layer.dead_fraction == pytest.approx(2 / 16)


def test_gated_combination_and_gate_only_count() -> None:
    g = torch.Generator().manual_seed(13)
    gate = torch.randn(16, 32, generator=g)
    up, down = torch.randn(16, 32, generator=g), torch.randn(32, 16, generator=g)
    gate[5] = 0.0
    layer = dead_neurons(row_norms(up), column_norms(down), row_norms(gate))
    assert layer.gated
    assert layer.dead == 1
    assert layer.gate_dead == 1
    assert dead_neurons(row_norms(up), column_norms(down)).dead == 0  # ungated: alive


def test_random_init_has_no_dead_neurons() -> None:
    g = torch.Generator().manual_seed(14)
    layer = dead_neurons(
        row_norms(torch.randn(512, 32, generator=g)),
        column_norms(torch.randn(32, 512, generator=g)),
    )
    assert layer.dead == 0
    assert layer.weak == 0


# --- norm gains ---------------------------------------------------------------------------


def test_gain_statistics_count_the_seed_bands() -> None:
    stats = gain_stats(torch.tensor([0.1, 0.9, 1.0, 1.1, 1.6, 2.0]))
    assert (stats.high, stats.low, stats.near_one) == (2, 1, 3)
    assert stats.mean == pytest.approx(6.7 / 6)


def test_gain_directions_identical_orthogonal_and_scaled() -> None:
    ones = [torch.ones(8) * s for s in (1.0, 2.0, 3.0)]
    same = gain_directions(ones)
    np.testing.assert_allclose(same.cosine, np.ones((3, 3)))
    np.testing.assert_allclose(same.norms, [math.sqrt(8) * s for s in (1, 2, 3)])
    assert same.explained.size == 0  # nothing to explain: one direction
    e = torch.eye(4)
    split = gain_directions([e[0], e[1], e[0] + 1e-3 * e[2]])
    assert split.cosine[0, 1] == pytest.approx(0.0)
    assert split.explained[0] > 0.99  # one axis separates layer 1 from the others
    assert split.mean_adjacent == pytest.approx(0.0, abs=1e-3)


def test_offset_gains_of_qwen3_5() -> None:
    assert gain_offset("qwen3_5", "decoder", "norm_attn") == 1.0
    assert gain_offset("qwen3_5", "decoder", "linear_norm") == 0.0
    assert gain_offset("llama", "decoder", "norm_attn") == 0.0


# --- T5 relative position bias ------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [True, False])
def test_bucket_function_matches_transformers(bidirectional: bool) -> None:
    from transformers.models.t5.modeling_t5 import T5Attention

    rel = torch.arange(-300, 301)
    expected = T5Attention._relative_position_bucket(  # type: ignore[no-untyped-call]
        rel, bidirectional=bidirectional, num_buckets=32, max_distance=128
    )
    got = t5_bucket(rel.numpy(), bidirectional=bidirectional, num_buckets=32, max_distance=128)
    np.testing.assert_array_equal(got, expected.numpy())


def test_decoder_layout_reproduces_the_seed_rule() -> None:
    lay = bucket_layout(32, bidirectional=False)
    np.testing.assert_array_equal(np.flatnonzero(lay.local), [0, 1, 2])
    np.testing.assert_array_equal(np.flatnonzero(lay.global_), [29, 30, 31])
    assert lay.null_mixed_fraction() == pytest.approx(1 - 6 / 32)
    enc = bucket_layout(32, bidirectional=True)
    assert not enc.used[16]  # distance 0 "after the query" never occurs


def test_monotone_local_and_global_heads() -> None:
    buckets = 32
    decay = -np.arange(buckets, dtype=np.float64)  # nearest attended most
    rise = np.arange(buckets, dtype=np.float64)  # farthest attended most
    bump = -np.abs(np.arange(buckets) - 12.0)  # peak at distance 12
    table = torch.tensor(np.stack([decay, rise, bump], axis=1))
    result = position_bias_profiles(table, bidirectional=False)
    local, far, mixed = result.heads
    assert local.kind == "local"
    assert local.monotonic_fraction == 1.0
    assert local.distance_correlation == pytest.approx(-1.0)
    assert far.kind == "global"
    assert far.monotonic_fraction == 0.0
    assert mixed.kind == "mixed"
    assert mixed.peak_bucket == 12
    assert (result.count("local"), result.count("global"), result.count("mixed")) == (1, 1, 1)


def test_encoder_peak_after_the_query_is_signed() -> None:
    table = torch.zeros(32, 1, dtype=torch.float64)
    table[17, 0] = 1.0  # the key one position after the query
    head = position_bias_profiles(table, bidirectional=True).heads[0]
    assert head.peak_distance == 1
    assert head.kind == "local"


# --- tying --------------------------------------------------------------------------------


def test_tied_and_untied_tables() -> None:
    g = torch.Generator().manual_seed(15)
    e = torch.randn(10, 4, generator=g)
    assert tensor_digest(e) == tensor_digest(e.clone().to(torch.float64))
    assert tensor_digest(e) != tensor_digest(e + 1e-6)
    digests = {"embeddings.embed_tokens": tensor_digest(e), "head.lm_head": tensor_digest(e)}
    tied = {"model_type": "gpt2", "tie_word_embeddings": True, "architectures": ["GPT2LMHeadModel"]}
    ok = tying_report(
        digests,
        reference="embeddings.embed_tokens",
        stack_copies=[],
        lm_head="head.lm_head",
        config=tied,
    )
    assert ok.consistent_fraction == 1.0
    bad = tying_report(
        digests,
        reference="embeddings.embed_tokens",
        stack_copies=[],
        lm_head="head.lm_head",
        config={**tied, "tie_word_embeddings": False},
    )
    assert bad.consistent_fraction == 0.0  # untied per config, yet identical


def test_absent_head_is_judged_by_config_and_architecture() -> None:
    digests = {"embeddings.embed_tokens": "x"}
    untied_lm = {"model_type": "llama", "architectures": ["LlamaForCausalLM"]}
    missing = tying_report(
        digests,
        reference="embeddings.embed_tokens",
        stack_copies=[],
        lm_head=None,
        config={**untied_lm, "tie_word_embeddings": False},
    )
    assert missing.pairs[0].status == "absent"
    assert not missing.pairs[0].consistent
    headless = tying_report(
        digests,
        reference="embeddings.embed_tokens",
        stack_copies=[],
        lm_head=None,
        config={"model_type": "bert", "architectures": ["BertModel"]},
    )
    assert headless.pairs == ()


def test_t5_stack_copies_must_equal_the_shared_table() -> None:
    digests = {
        "embeddings.embed_tokens": "a",
        "encoder.embed_tokens": "a",
        "decoder.embed_tokens": "b",
    }
    report = tying_report(
        digests,
        reference="embeddings.embed_tokens",
        stack_copies=["encoder.embed_tokens", "decoder.embed_tokens"],
        lm_head=None,
        config={"model_type": "t5", "architectures": ["T5EncoderModel"]},
    )
    assert [p.consistent for p in report.pairs] == [True, False]


# --- embedding geometry -------------------------------------------------------------------


def test_isotropic_table_matches_the_analytic_nulls() -> None:
    g = torch.Generator().manual_seed(16)
    n, d = 4000, 100
    geo = embedding_geometry(torch.randn(n, d, generator=g), n_sample=1000, seed=1)
    assert geo.pr_over_dim == pytest.approx(random_pr_over_dim(n, d), rel=0.02)
    assert abs(geo.mean_cosine) < 6 * math.sqrt(2 / d) / geo.n_sample
    assert geo.cosine_std == pytest.approx(1 / math.sqrt(d), rel=0.05)
    assert geo.cosine_interval.low < 0 < geo.cosine_interval.high


def test_shared_direction_gives_high_cosine_and_low_pr() -> None:
    g = torch.Generator().manual_seed(17)
    base = torch.randn(1, 64, generator=g)
    table = 3 * base + 0.5 * torch.randn(500, 64, generator=g)
    geo = embedding_geometry(table, n_sample=5000, seed=0)
    x = table.double()
    u = x / x.norm(dim=1, keepdim=True)
    c = u @ u.T
    off = ~torch.eye(500, dtype=torch.bool)
    assert geo.n_sample == 500
    assert geo.mean_cosine == pytest.approx(float(c[off].mean()), rel=1e-10)
    assert geo.cosine_std == pytest.approx(float(c[off].std(unbiased=False)), rel=1e-8)
    assert geo.mean_cosine > 0.9


def test_embedding_sample_is_seeded_and_skips_zero_rows() -> None:
    g = torch.Generator().manual_seed(18)
    table = torch.randn(300, 16, generator=g)
    table[0] = 0.0
    a = embedding_geometry(table, n_sample=100, seed=3)
    b = embedding_geometry(table, n_sample=100, seed=3)
    c = embedding_geometry(table, n_sample=100, seed=4)
    assert a.mean_cosine == b.mean_cosine != c.mean_cosine
    assert a.zero_rows == 1
