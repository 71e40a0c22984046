"""The streaming battery: every tensor read once, every measure run, on the tiny replicas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import terrain.measures.crosslayer as crosslayer_module
from terrain.anatomy import Anatomy, build_anatomy
from terrain.battery import BatteryResult, run_battery
from terrain.battery.heads import head_layouts
from terrain.checkpoint import Checkpoint
from terrain.measures.crosslayer import cosine_matrix, layer_cosines
from terrain.measures.sparsity import role_sparsity
from terrain.measures.spectra import matrix_spectra
from tests.conftest import build_tiny


def _counted(path: Path, name: str) -> tuple[Anatomy, BatteryResult]:
    ckpt = Checkpoint(path, name=name)
    anatomy = build_anatomy(ckpt, ckpt.config)
    return anatomy, run_battery(anatomy, config=ckpt.config)


def _needed(anatomy: Anatomy) -> set[str]:
    shapes = anatomy.source.tensor_shapes()
    out = set()
    for r in anatomy.roles:
        ndim = len(r.shape(shapes[r.tensor]))
        if r.kind == "weight" and (ndim == 2 or (ndim == 1 and "norm" in r.role)):
            out.add(r.tensor)
    return out


def _per_layer_2d(anatomy: Anatomy) -> set[str]:
    shapes = anatomy.source.tensor_shapes()
    by_role: dict[tuple[str, str], list[str]] = {}
    for r in anatomy.roles:
        if r.kind == "weight" and r.layer is not None and len(r.shape(shapes[r.tensor])) == 2:
            by_role.setdefault((r.stack, r.role), []).append(r.tensor)
    return {t for tensors in by_role.values() if len(tensors) >= 2 for t in tensors}


@pytest.mark.parametrize("fixture", ["tiny_bert", "tiny_t5"])
def test_each_pass_reads_every_needed_tensor_once(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    """Pass 1 reads every needed tensor once; pass 2 (cross-layer cosines) reads every
    per-layer 2-D tensor once more, in row chunks."""
    path: Path = request.getfixturevalue(fixture)
    anatomy, result = _counted(path, fixture)
    assert result.reads == dict.fromkeys(_needed(anatomy), 1)
    assert result.crosslayer_reads == dict.fromkeys(_per_layer_2d(anatomy), 1)
    ckpt = anatomy.source
    assert isinstance(ckpt, Checkpoint)
    total = sum(ckpt.nbytes(n) for n in result.reads)
    total += sum(ckpt.nbytes(n) for n in result.crosslayer_reads)
    assert result.bytes_read == total


def test_pass_one_reads_tensors_in_file_order(tiny_bert: Path) -> None:
    ckpt = Checkpoint(tiny_bert, name="tiny-bert")
    anatomy = build_anatomy(ckpt, ckpt.config)
    result = run_battery(anatomy, config=ckpt.config)
    order = ckpt.read_order()
    assert list(result.reads) == [n for n in order if n in result.reads]
    offsets = [ckpt.shards.tensors[n].offset for n in result.reads]
    assert offsets == sorted(offsets)


def test_fused_qkv_is_read_once_for_three_roles(replica_cache: Path) -> None:
    anatomy, result = _counted(build_tiny("gpt2-tiny", replica_cache), "gpt2-tiny")
    fused = [n for n in result.reads if n.endswith("attn.c_attn.weight")]
    assert fused
    assert all(result.reads[n] == 1 for n in fused)
    assert {"decoder.q", "decoder.k", "decoder.v"} <= set(result.spectra)
    assert len(result.qk) == anatomy.dims.layers["decoder"]


def test_tiny_bert_battery_is_complete(tiny_bert: Path) -> None:
    anatomy, result = _counted(tiny_bert, "tiny-bert")
    layers = anatomy.dims.layers["encoder"]
    for role in ("q", "k", "v", "o", "mlp_up", "mlp_down"):
        assert len(result.spectra[f"encoder.{role}"].layers) == layers
        assert f"encoder.{role}" in result.crosslayer
    assert {"embeddings.embed_tokens", "encoder.q"} <= set(result.sparsity)
    assert set(next(iter(result.sparsity.values())).below) == {1e-4, 1e-3, 1e-2, 1e-1}
    assert [q.layer for q in result.qk] == list(range(layers))
    assert len(result.mlp) == layers
    assert not any(m.gated for m in result.mlp)
    assert {"encoder.norm_attn", "encoder.norm_mlp"} <= set(result.gain_directions)
    assert result.position_bias == []  # BERT has learned absolute positions
    assert result.embedding is not None
    assert result.embedding.n_tokens == anatomy.dims.vocab_size
    assert result.heads["encoder"].n_heads == anatomy.dims.n_heads


def test_tiny_t5_battery_has_cross_attention_position_bias_and_tying(tiny_t5: Path) -> None:
    _, result = _counted(tiny_t5, "tiny-t5")
    assert any(q.cross for q in result.qk)
    assert {(t.stack, t.bidirectional) for t in result.position_bias} == {
        ("encoder", True),
        ("decoder", False),
    }
    assert result.tying is not None
    assert result.tying.consistent_fraction == 1.0  # shared table, head tied per config
    assert all(q.rank_deficient_heads == 0 for q in result.qk)


def test_battery_values_equal_the_measures_applied_directly(tiny_bert: Path) -> None:
    anatomy, result = _counted(tiny_bert, "tiny-bert")
    q = [anatomy.read(e) for e in anatomy.layers("encoder", "q")]
    direct = role_sparsity("encoder.q", q, (1e-4, 1e-3, 1e-2, 1e-1))
    assert result.sparsity["encoder.q"] == direct
    np.testing.assert_allclose(
        result.spectra["encoder.q"].spectra.stable_rank, matrix_spectra(q).stable_rank
    )
    # float32 block sums (layer_cosines): far below the 1/√n null, not bit-equal.
    np.testing.assert_allclose(result.crosslayer["encoder.q"].matrix, cosine_matrix(q), atol=1e-6)


def test_chunked_layer_cosines_equal_cosine_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(0)
    shared = torch.randn(30, 17, generator=g)
    layers = [shared + torch.randn(30, 17, generator=g) for _ in range(4)]
    monkeypatch.setattr(crosslayer_module, "COSINE_CHUNK", 64)  # 510 values: 8 chunks
    np.testing.assert_allclose(layer_cosines(layers), cosine_matrix(layers), atol=1e-12)
    # Blocks of 24 float32 products: 2 per full chunk, a float64 remainder of 16 each.
    monkeypatch.setattr(crosslayer_module, "COSINE_BLOCK", 24)
    np.testing.assert_allclose(layer_cosines(layers), cosine_matrix(layers), atol=1e-6)
    with pytest.raises(ValueError, match="at least two"):
        layer_cosines(layers[:1])


def test_every_family_runs_with_each_tensor_read_once(replica_cache: Path) -> None:
    families = (
        "llama-tiny",
        "qwen3-tiny",
        "qwen3_5-tiny",
        "olmo3-tiny",
        "dinov2-tiny",
        "clip-vision-tiny",
        "open-clip-tiny",
        "t5-v1_1-tiny",
    )
    for name in families:
        anatomy, result = _counted(build_tiny(name, replica_cache), name)
        assert set(result.reads.values()) == {1}, name
        assert result.spectra, name
        assert result.qk, name
        assert not result.qk_skipped, (name, result.qk_skipped)
        assert all(q.rank_deficient_heads == 0 for q in result.qk), name
        assert result.mlp, name
        assert all(m.dead == 0 for m in result.mlp), name  # random init: none dead
        tying = result.tying
        assert tying is not None
        assert not tying.pairs or tying.consistent_fraction == 1.0, (name, tying.as_dict())
        assert anatomy.family


def _summary(result: BatteryResult) -> dict[str, object]:
    """Every measured value of a battery, in comparable form (arrays as lists)."""
    return {
        "sparsity": {k: v.as_dict() for k, v in result.sparsity.items()},
        "spectra": {k: v.as_dict() for k, v in result.spectra.items()},
        "qk": [q.as_dict() for q in result.qk],
        "mlp": [m.as_dict() for m in result.mlp],
        "gains": [g.as_dict() for g in result.gains],
        "crosslayer": {k: v.matrix.tolist() for k, v in result.crosslayer.items()},
        "embedding": result.embedding.as_dict() if result.embedding else None,
        "tying": result.tying.as_dict() if result.tying else None,
        "position_bias": [p.as_dict() for p in result.position_bias],
    }


@pytest.mark.parametrize("fixture", ["tiny_bert", "tiny_t5"])
def test_thread_pool_gives_the_inline_results_exactly(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    """With several threads the battery's tasks run in a pool; merged in order, each task
    single-threaded, so every value equals the one-thread pass bit for bit."""
    path: Path = request.getfixturevalue(fixture)
    ckpt = Checkpoint(path, name=fixture)
    anatomy = build_anatomy(ckpt, ckpt.config)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        inline = run_battery(anatomy, config=ckpt.config)
        torch.set_num_threads(3)
        pooled = run_battery(anatomy, config=ckpt.config)
        assert torch.get_num_threads() == 3  # the pool gave torch its threads back
    finally:
        torch.set_num_threads(before)
    assert _summary(pooled) == _summary(inline)
    assert pooled.reads == inline.reads


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch")
def test_battery_on_cuda_equals_cpu(tiny_t5: Path) -> None:  # pragma: no cover - GPU only
    ckpt = Checkpoint(tiny_t5, name="tiny-t5")
    anatomy = build_anatomy(ckpt, ckpt.config)
    cpu = run_battery(anatomy, config=ckpt.config, device="cpu")
    gpu = run_battery(anatomy, config=ckpt.config, device="cuda")
    for label, s in cpu.spectra.items():
        np.testing.assert_allclose(
            gpu.spectra[label].spectra.stable_rank, s.spectra.stable_rank, rtol=1e-8
        )
    assert [q.n_positive for q in gpu.qk] == [q.n_positive for q in cpu.qk]
    assert gpu.embedding is not None
    assert cpu.embedding is not None
    assert gpu.embedding.mean_cosine == pytest.approx(cpu.embedding.mean_cosine, rel=1e-8)


def test_heads_come_from_the_tower_config_or_are_skipped_with_a_reason(
    replica_cache: Path,
) -> None:
    path = build_tiny("open-clip-tiny", replica_cache)
    ckpt = Checkpoint(path, name="open-clip-tiny")
    anatomy = build_anatomy(ckpt, ckpt.config)
    found, skipped = head_layouts(anatomy, ckpt.config)
    assert found["text"].n_heads == 4
    assert found["text"].source == "config.json text_cfg"
    assert not skipped
    wrong = {**ckpt.config, "text_cfg": {**ckpt.config["text_cfg"], "heads": 3}}
    found, skipped = head_layouts(anatomy, wrong)
    assert "text" not in found
    assert "W_Q has 32 rows" in skipped["text"]
    result = run_battery(anatomy, config=wrong)
    assert {q.stack for q in result.qk} == {"vision"}
    assert "text" in result.qk_skipped
