"""Layer variation after gauge alignment on tiny replicas: planted gauges are recovered and
the aligned weights are a symmetry (same output)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from terrain.anatomy import build_anatomy
from terrain.checkpoint import Checkpoint
from terrain.modules import build_module
from terrain.symmetry import Architecture, Weights, describe
from terrain.symmetry.attention import apply_qk, apply_vo
from terrain.symmetry.groups import RotaryPairs, orthogonal, pair_rotations
from terrain.symmetry.layer_variation import (
    LayerVariation,
    measure_layer_variation,
    permutation_by_cosine,
    permute_mlp,
    procrustes,
    rotary_procrustes,
    tolerance,
)
from terrain.symmetry.weights import relative_error
from terrain.tracing import forward_inputs, primary_output
from tests.conftest import build_tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _load(path: Path, name: str) -> tuple[Architecture, Weights, dict[str, torch.Tensor]]:
    ckpt = Checkpoint(path, name=name)
    anatomy = build_anatomy(ckpt, ckpt.config)
    module = build_module(ckpt, dtype="float64", device="cpu", trust_remote_code=False)
    weights = Weights(module)
    inputs = forward_inputs(ckpt.config, seq_len=8, seed=0, dtype=torch.float64)
    return describe(anatomy, ckpt.config, weights), weights, inputs


def test_procrustes_recovers_planted_rotation() -> None:
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(8, 40, generator=gen, dtype=torch.float64)
    R = orthogonal(8, gen)
    assert torch.allclose(procrustes(target, R.T @ target), R, atol=1e-10)


def test_rotary_procrustes_recovers_planted_pair_rotation() -> None:
    gen = torch.Generator().manual_seed(1)
    rope = RotaryPairs.rotate_half(8, rotary_dim=6)  # two free coordinates
    target = torch.randn(8, 40, generator=gen, dtype=torch.float64)
    R = pair_rotations(rope, gen)
    assert torch.allclose(rotary_procrustes(rope, target, R.T @ target), R, atol=1e-10)


def test_permutation_recovers_planted_permutation() -> None:
    gen = torch.Generator().manual_seed(2)
    target = torch.randn(30, 12, generator=gen, dtype=torch.float64)
    perm = torch.randperm(30, generator=gen)
    source = target[perm]
    sigma = permutation_by_cosine(target, source)
    assert torch.equal(source[sigma], target)


def _plant(arch: Architecture, weights: Weights, seed: int) -> Weights:
    """Layer 1 of the first stack := a gauge-transformed copy of layer 0 (orthogonal V/O and,
    where aligned, Q/K maps; an MLP permutation)."""
    gen = torch.Generator().manual_seed(seed)
    w = weights.fresh()
    a0, a1 = arch.attention[0], arch.attention[1]
    m0, m1 = arch.mlp[0], arch.mlp[1]
    for p0, p1 in ((a0.q, a1.q), (a0.k, a1.k), (a0.v, a1.v), (a0.o, a1.o)):
        w.write(p1, *w.read(p0))
    for p0b, p1b in ((m0.up, m1.up), (m0.down, m1.down), (m0.gate, m1.gate)):
        if p0b is not None and p1b is not None:
            w.write(p1b, *w.read(p0b))
    vo = [orthogonal(a1.d_head, gen) for _ in range(a1.n_kv_heads)]
    apply_vo(w, a1, vo, [vo[h // a1.group] for h in range(a1.n_heads)])
    qk = [
        orthogonal(a1.d_head, gen) if a1.rope is None else pair_rotations(a1.rope, gen)
        for _ in range(a1.n_kv_heads)
    ]
    apply_qk(w, a1, qk, qk)
    permute_mlp(w, m1, torch.randperm(int(w.read(m1.down)[0].shape[1]), generator=gen))
    return w


def _first_pairs(result: LayerVariation) -> list[dict[str, float]]:
    return [p.after for p in result.pairs if p.site.endswith(" 0→1")]


@pytest.mark.parametrize("name", ["bert-tiny", "llama-tiny"])
def test_planted_gauge_is_recovered(name: str, replica_cache: Path, tiny_bert: Path) -> None:
    path = tiny_bert if name == "bert-tiny" else build_tiny(name, replica_cache)
    arch, weights, inputs = _load(path, name)
    planted = _plant(arch, weights, seed=3)
    result = measure_layer_variation(arch, planted)
    after = _first_pairs(result)
    assert len(after) == 2  # attention and MLP of layers 0→1
    for roles in after:
        for role, value in roles.items():
            assert value < 1e-10, (role, value)
    before = [p.before for p in result.pairs if p.site.endswith(" 0→1")]
    assert max(v for roles in before for v in roles.values()) > 0.1
    ref = primary_output(planted.forward(inputs))
    assert relative_error(primary_output(result.aligned_weights().forward(inputs)), ref) <= 1e-10


@pytest.mark.parametrize("name", ["bert-tiny", "t5-tiny", "llama-tiny", "qwen3-tiny", "gpt2-tiny"])
def test_aligned_weights_give_the_same_output(
    name: str, replica_cache: Path, tiny_bert: Path, tiny_t5: Path
) -> None:
    path = {"bert-tiny": tiny_bert, "t5-tiny": tiny_t5}.get(name) or build_tiny(name, replica_cache)
    arch, weights, inputs = _load(path, name)
    result = measure_layer_variation(arch, weights)
    assert result.pairs
    assert result.aligned_weights().written()  # something was aligned
    after, before = result.values("after"), result.values("before")
    assert sum(after) <= sum(before) + 1e-9
    ref = primary_output(weights.fresh().forward(inputs))
    err = relative_error(primary_output(result.aligned_weights().forward(inputs)), ref)
    assert err <= tolerance(arch, result.symmetries_used, torch.float64)


def test_rope_pairs_are_aligned_and_qk_norm_is_skipped(replica_cache: Path) -> None:
    llama, lw, _ = _load(build_tiny("llama-tiny", replica_cache), "llama-tiny")
    qwen, qw, _ = _load(build_tiny("qwen3-tiny", replica_cache), "qwen3-tiny")
    applied = measure_layer_variation(llama, lw).pairs[0].applied
    assert applied["qk_gauge"].startswith("RoPE")
    applied = measure_layer_variation(qwen, qw).pairs[0].applied
    assert applied["qk_gauge"].startswith("not aligned: q/k RMS norm")
