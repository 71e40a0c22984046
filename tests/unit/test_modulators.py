"""Modulators: exact no-op at α = 0, untouched null space, clamp, template geometry, attach/detach."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from terrain.anatomy import build_anatomy
from terrain.checkpoint import Checkpoint
from terrain.measures.simplex_reference import cayley_menger_volumes_loop
from terrain.modulators import FieldModulator, FieldModulatorConfig, LerpModulator, attach
from terrain.modulators.field import cayley_menger_volume_sq, regular_simplex
from terrain.modulators.probe import output, snapshot, state_unchanged
from terrain.modules import build_module
from terrain.tracing import forward_inputs


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_regular_simplex_has_unit_edges_and_the_known_volume(k: int) -> None:
    verts = regular_simplex(k, 8).to(torch.float64)
    d = torch.cdist(verts, verts)
    off = d[~torch.eye(k + 1, dtype=torch.bool)]
    torch.testing.assert_close(off, torch.ones_like(off))
    torch.testing.assert_close(
        verts.mean(0), torch.zeros(8, dtype=torch.float64), atol=1e-12, rtol=0
    )
    # Regular k-simplex of unit edge: V = sqrt(k+1) / (k! * 2^(k/2)).
    expected = math.sqrt(k + 1) / (math.factorial(k) * 2 ** (k / 2))
    _, vol2 = cayley_menger_volume_sq(verts)
    assert math.sqrt(float(vol2)) == pytest.approx(expected, rel=1e-10)


def test_cayley_menger_matches_the_research_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    pts = torch.randn(20, 5, 12, generator=gen, dtype=torch.float64)
    _, vol2 = cayley_menger_volume_sq(pts)
    flat = pts.reshape(100, 12).numpy()
    index = np.arange(100).reshape(20, 5)
    np.testing.assert_allclose(
        np.sqrt(vol2.numpy()), cayley_menger_volumes_loop(flat, index), rtol=1e-8
    )


@pytest.mark.parametrize("logit", [-1e4, -30.0, 0.0, 30.0, 1e4, -math.inf, math.inf])
def test_clamp_holds_for_extreme_logits(logit: float) -> None:
    field = FieldModulator(FieldModulatorConfig(d_model=16, n_layers=2))
    with torch.no_grad():
        field.alpha_logits.fill_(logit)
    alphas = field.alphas().detach()
    assert float(alphas.min()) >= 0.001
    assert float(alphas.max()) <= 0.35


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(1e-3, 1e3),
    position=st.sampled_from(["tail", "scattered"]),
    bypass=st.booleans(),
)
def test_null_space_is_bit_identical_for_any_alphas_and_inputs(
    seed: int, scale: float, position: Literal["tail", "scattered"], bypass: bool
) -> None:
    config = FieldModulatorConfig(
        d_model=24, n_layers=3, null_space_position=position, seed=seed % 97
    )
    field = FieldModulator(config).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        field.alpha_logits.copy_(torch.randn(3, 3, generator=gen, dtype=torch.float64) * 10)
    field.bypass_clamp = bypass
    x = torch.randn(2, 5, 24, generator=gen, dtype=torch.float64) * scale
    out = field.modulate(x, layer=int(seed % 3))
    null: torch.Tensor = field.null_index  # type: ignore[assignment]
    active: torch.Tensor = field.active_index  # type: ignore[assignment]
    assert null.numel() == 6
    assert torch.equal(out[..., null], x[..., null])
    assert not torch.equal(out[..., active], x[..., active])  # control: the active part moves


def test_field_at_alpha_zero_is_bitwise_identity_only_with_the_clamp_bypassed() -> None:
    field = FieldModulator(FieldModulatorConfig(d_model=32, n_layers=1)).double()
    x = torch.randn(2, 4, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    field.set_alpha(0.0)
    field.bypass_clamp = True
    assert torch.equal(field.modulate(x, 0), x)
    field.bypass_clamp = False  # the floor 0.001 applies
    assert not torch.equal(field.modulate(x, 0), x)


def test_lerp_at_alpha_zero_is_bitwise_identity() -> None:
    lerp = LerpModulator(16, 50, n_layers=3, per_layer_alpha=True).double()
    gen = torch.Generator().manual_seed(2)
    h = torch.randn(2, 7, 16, generator=gen, dtype=torch.float64) * 1e3
    ids = torch.randint(0, 50, (2, 7), generator=gen)
    lerp.set_alpha(0.0)
    assert torch.equal(lerp.modulate(h, 1, ids), h)
    lerp.set_alpha(0.2)
    expected = 0.8 * h + 0.2 * lerp.proj(lerp.geo_embed(ids))
    torch.testing.assert_close(lerp.modulate(h, 1, ids), expected)


def test_lerp_init_from_cosine_target_reproduces_a_low_rank_target() -> None:
    gen = torch.Generator().manual_seed(3)
    base = torch.nn.functional.normalize(
        torch.randn(40, 6, generator=gen, dtype=torch.float64), dim=1
    )
    target = base @ base.T
    lerp = LerpModulator(16, 40, n_geometric_dims=8).double()
    lerp.init_from_cosine_target(target)
    emb = torch.nn.functional.normalize(lerp.geo_embed.weight.detach(), dim=1)
    torch.testing.assert_close(emb @ emb.T, target, atol=1e-8, rtol=0)


def test_attach_then_detach_restores_the_model(tiny_bert: Path) -> None:
    ckpt = Checkpoint(tiny_bert, name="b")
    module = build_module(ckpt, dtype="float64", device="cpu", trust_remote_code=False)
    anatomy = build_anatomy(ckpt, ckpt.config)
    inputs = forward_inputs(ckpt.config, dtype=torch.float64)
    before, plain = snapshot(module), output(module, inputs)
    field = FieldModulator(FieldModulatorConfig(d_model=64, n_layers=3)).double()
    field.set_alpha(0.3)
    handle = attach(module, anatomy, field)
    assert handle.layers == [0, 1, 2]
    assert not torch.equal(output(module, inputs), plain)
    handle.detach()
    assert torch.equal(output(module, inputs), plain)
    assert state_unchanged(module, before)
