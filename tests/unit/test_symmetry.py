"""Exact symmetries on tiny replicas: each holds to 1e-10 (float64), each control fails by O(1).

Every family of the catalogue is checked on its tiny replica, moved first to a generic
point of weight space (weights ~ N(0, 1/fan_in), gains 1 + 0.3·N(0, 1), biases
0.1·N(0, 1)): at the replicas' own initialisation attention is almost uniform, GELU/SiLU
almost linear and every norm gain 1, which makes some controls nearly (or exactly) inert.
The symmetry must hold at every point; a control must fail at a generic one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from terrain.anatomy import Anatomy, build_anatomy
from terrain.checkpoint import Checkpoint
from terrain.modules import build_module
from terrain.symmetry import (
    CONTROL_FLOOR,
    SYMMETRIES,
    NotApplicable,
    NotCataloguedError,
    Projection,
    Symmetry,
    Weights,
    catalogue,
    catalogued_families,
    measure,
)
from terrain.symmetry.attention import _normed_maps
from terrain.symmetry.groups import (
    RotaryPairs,
    block_map,
    invertible,
    orthogonal,
    rotary_commutant,
    rotation2,
)
from terrain.symmetry.layout import AttentionLayout, QKNorm
from terrain.tracing import forward_inputs, primary_output
from tests.conftest import TINY_FORWARD_MODELS, build_tiny

SEEDS = (0, 1, 2)
TINY = TINY_FORWARD_MODELS


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Tiny:
    """A tiny replica built in float64 for this module only (its weights may be moved)."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        ckpt = Checkpoint(path, name=name)
        self.config: dict[str, Any] = ckpt.config
        self.anatomy: Anatomy = build_anatomy(ckpt, ckpt.config)
        self.module = build_module(ckpt, dtype="float64", device="cpu", trust_remote_code=False)
        self.inputs = forward_inputs(ckpt.config, seq_len=8, seed=0, dtype=torch.float64)

    def entries(self) -> dict[str, Symmetry | NotApplicable]:
        return catalogue(self.anatomy, self.config, Weights(self.module))

    def symmetry(self, name: str) -> Symmetry:
        entry = self.entries()[name]
        assert isinstance(entry, Symmetry), entry
        return entry


def generic_point(module: torch.nn.Module, seed: int = 0) -> None:
    """Resample every parameter in place to a generic point (see the module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
            if p.dim() >= 2:
                p.copy_(noise / math.sqrt(p.shape[-1] if p.dim() == 2 else p[0].numel()))
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(1.0 + 0.3 * noise)


@pytest.fixture(scope="module")
def tiny(replica_cache: Path, tiny_bert: Path, tiny_t5: Path) -> Callable[[str], Tiny]:
    """name -> its tiny replica at its initialisation (built once per module)."""
    built: dict[str, Tiny] = {}

    def get(name: str) -> Tiny:
        if name not in built:
            path = {"bert-tiny": tiny_bert, "t5-tiny": tiny_t5}.get(name)
            built[name] = Tiny(path or build_tiny(name, replica_cache), name)
        return built[name]

    return get


@pytest.fixture(scope="module")
def generic(replica_cache: Path, tiny_bert: Path, tiny_t5: Path) -> Callable[[str], Tiny]:
    """name -> its tiny replica moved to a generic point (built once per module)."""
    built: dict[str, Tiny] = {}

    def get(name: str) -> Tiny:
        if name not in built:
            path = {"bert-tiny": tiny_bert, "t5-tiny": tiny_t5}.get(name)
            model = Tiny(path or build_tiny(name, replica_cache), name)
            generic_point(model.module)
            built[name] = model
        return built[name]

    return get


@pytest.mark.parametrize("name", TINY)
def test_every_symmetry_holds_and_every_control_fails(
    generic: Callable[[str], Tiny], name: str
) -> None:
    model = generic(name)
    weights = Weights(model.module)
    before = {n: p.detach().clone() for n, p in model.module.named_parameters()}
    measured = 0
    for sym_name, entry in catalogue(model.anatomy, model.config, weights).items():
        if isinstance(entry, NotApplicable):
            assert entry.reason, sym_name
            continue
        result = measure(weights, entry, model.inputs, SEEDS)
        assert result.max_error <= result.tolerance, (name, sym_name, result.errors)
        assert result.controls, (name, sym_name)
        for control in result.controls:
            assert control.inert is None, (name, sym_name, control.name, control.inert)
            assert control.min_error >= CONTROL_FLOOR, (name, sym_name, control)
        assert result.influence >= 0.1, (name, sym_name)  # a generic point is not degenerate
        measured += 1
    assert measured >= 3, name  # Q/K, V/O and the MLP permutation hold for every family
    for n, p in model.module.named_parameters():  # the shared module is never edited
        assert torch.equal(p.detach(), before[n]), n


def test_catalogue_of_bert_and_t5(tiny: Callable[[str], Tiny]) -> None:
    bert = tiny("bert-tiny").entries()
    assert set(bert) == set(SYMMETRIES)
    assert isinstance(bert["qk_gauge"], Symmetry)
    assert [c.name for c in bert["qk_gauge"].controls] == ["q_only"]
    scaling = bert["mlp_scaling"]
    assert isinstance(scaling, NotApplicable)
    assert "gelu" in scaling.reason
    assert isinstance(bert["residual_rotation"], NotApplicable)
    t5 = tiny("t5-tiny").entries()
    assert all(isinstance(e, Symmetry) for e in t5.values()), t5
    rotation = t5["residual_rotation"]
    assert isinstance(rotation, Symmetry)
    assert rotation.float32_reason  # T5LayerNorm's mean square is taken in float32


def test_every_adapter_family_with_a_module_is_catalogued() -> None:
    assert {"bert", "t5", "llama", "qwen3", "qwen3_5", "olmo3", "gpt2", "dinov2", "clip"} <= set(
        catalogued_families()
    )


def test_uncatalogued_family_is_refused_with_the_known_ones(tiny: Callable[[str], Tiny]) -> None:
    model = tiny("bert-tiny")
    other = Anatomy("no-such-family", model.anatomy.source, model.anatomy.dims, (), {})
    with pytest.raises(NotCataloguedError, match=r"'no-such-family'.*catalogued: bert"):
        catalogue(other, model.config, Weights(model.module))


@settings(derandomize=True, max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_qk_gauge_holds_for_any_drawn_element(tiny: Callable[[str], Tiny], seed: int) -> None:
    for name in ("bert-tiny", "t5-tiny"):
        model = tiny(name)
        result = measure(Weights(model.module), model.symmetry("qk_gauge"), model.inputs, (seed,))
        assert result.max_error <= 1e-10, (name, seed, result.errors)


def test_controls_that_the_initialisation_makes_inert_are_named(
    tiny: Callable[[str], Tiny],
) -> None:
    """At init every norm gain is 1: the unfolded rotation and generic pair rotations are
    symmetries there too; they are reported inert with the reason, not measured."""
    t5 = tiny("t5-tiny")
    result = measure(Weights(t5.module), t5.symmetry("residual_rotation"), t5.inputs, (0,))
    inert = {c.name: c.inert for c in result.controls}
    assert inert["unfolded_rotation"] is not None
    assert "constant" in inert["unfolded_rotation"]
    assert inert["non_orthogonal_map"] is None
    qwen = tiny("qwen3-tiny")
    result = measure(Weights(qwen.module), qwen.symmetry("qk_gauge"), qwen.inputs, (0,))
    assert {c.name for c in result.controls if c.inert} == {"pair_rotation_generic_angle"}


def test_control_floor_follows_the_influence_at_a_degenerate_point(
    tiny: Callable[[str], Tiny],
) -> None:
    """At a tiny random init, attention is almost uniform and adds little to the residual:
    deleting Q and K changes the output by well under 1e-2, so no Q/K map can change it by
    O(1). The floor scales with that influence; the Q-only control still clears it, and
    the symmetry stays ~1e-16, nine orders of magnitude below."""
    model = tiny("gpt2-tiny")
    result = measure(Weights(model.module), model.symmetry("qk_gauge"), model.inputs, SEEDS)
    assert result.influence < 1e-2
    assert result.control_floor == pytest.approx(CONTROL_FLOOR * result.influence)
    assert result.weak_controls == []
    assert result.min_control_error > 1e6 * result.max_error
    generic_model = Tiny(model.path, "gpt2-tiny")
    generic_point(generic_model.module)
    healthy = measure(
        Weights(generic_model.module), generic_model.symmetry("qk_gauge"), model.inputs, (0,)
    )
    assert healthy.influence > 1e-1


def test_unfolded_rotation_is_a_symmetry_when_gains_are_constant(
    tiny: Callable[[str], Tiny],
) -> None:
    """The reason given for inertness is true: with all gains 1 the control is exact."""
    t5 = tiny("t5-tiny")
    sym = t5.symmetry("residual_rotation")
    unfolded = next(c for c in sym.controls if c.name == "unfolded_rotation")
    weights = Weights(t5.module)
    reference = primary_output(weights.forward(t5.inputs))
    w = weights.fresh()
    unfolded.transform(w, torch.Generator().manual_seed(0))
    out = primary_output(w.forward(t5.inputs))
    assert float((out - reference).norm() / reference.norm()) < 1e-5


# Group elements -------------------------------------------------------------------------


def test_orthogonal_and_invertible_draws() -> None:
    gen = torch.Generator().manual_seed(0)
    q = orthogonal(12, gen)
    assert torch.allclose(q @ q.T, torch.eye(12, dtype=torch.float64), atol=1e-13)
    a = invertible(12, gen)
    s = torch.linalg.svdvals(a)
    assert float(s.min()) >= 0.5 - 1e-12
    assert float(s.max()) <= 2.0 + 1e-12


@settings(derandomize=True, max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), angle=st.floats(-10.0, 10.0))
def test_rotary_commutant_commutes_with_every_rotary_block(seed: int, angle: float) -> None:
    rope = RotaryPairs.rotate_half(10, rotary_dim=8)  # pairs (0,4) ... (3,7), free 8, 9
    assert rope.pairs == ((0, 4), (1, 5), (2, 6), (3, 7))
    assert rope.free == (8, 9)
    A = rotary_commutant(rope, torch.Generator().manual_seed(seed))
    R = block_map(rope, [rotation2(angle * (f + 1)) for f in range(4)], None)
    assert torch.allclose(A @ R, R @ A, atol=1e-12)
    # A generic orthogonal map does not commute (the RoPE negative control).
    G = orthogonal(10, torch.Generator().manual_seed(seed))
    if abs(math.sin(angle)) > 0.1:
        assert not torch.allclose(G @ R, R @ G, atol=1e-3)


@pytest.mark.parametrize("scope", ["head", "all"])
def test_normed_maps_are_signed_pair_permutations_shared_as_the_gain_requires(scope: str) -> None:
    rope = RotaryPairs.rotate_half(8)
    q, k, v, o = (Projection(n) for n in ("q", "k", "v", "o"))
    norm = QKNorm("g", "h", "head" if scope == "head" else "all")
    lay = AttentionLayout("x", q, k, v, o, 4, 2, 8, rope=rope, qk_norm=norm)
    maps = _normed_maps(lay, torch.Generator().manual_seed(3))
    assert len(maps) == 2
    for A in maps:
        assert torch.allclose(A @ A.T, torch.eye(8, dtype=torch.float64), atol=1e-13)
        entries = A.abs().round()
        assert torch.equal(entries, (entries > 0.5).to(entries.dtype))  # a signed permutation
    if scope == "head":  # one shared gain: the same quarter turns in every group
        assert torch.equal(maps[0].abs().round(), maps[1].abs().round())


# Weights --------------------------------------------------------------------------------


def test_fused_projection_round_trips_rows_period_and_transpose(
    tiny: Callable[[str], Tiny],
) -> None:
    module = tiny("gpt2-tiny").module
    weights = Weights(module)
    name = next(n for n, _ in module.named_parameters() if n.endswith("c_attn.weight"))
    stored = weights[name]  # Conv1D: (in, 3·out)
    d = stored.shape[0]
    k = Projection(name, transposed=True, rows=(d, 2 * d))
    W, _ = weights.read(k)
    assert torch.equal(W, stored.T[d : 2 * d])
    weights.write(k, torch.zeros_like(W))
    new = weights[name]
    assert torch.equal(new[:, d : 2 * d], torch.zeros(d, d, dtype=new.dtype))
    assert torch.equal(new[:, :d], stored[:, :d])
    assert torch.equal(new[:, 2 * d :], stored[:, 2 * d :])
    interleaved = Projection(name, transposed=True, rows=(0, 2), period=4)
    idx = interleaved.index(12)
    assert idx is not None
    assert idx.tolist() == [0, 1, 4, 5, 8, 9]


def test_tied_weights_follow_a_write_unless_written_themselves(
    tiny: Callable[[str], Tiny],
) -> None:
    weights = Weights(tiny("t5-tiny").module)
    shared = weights["shared.weight"]
    weights["shared.weight"] = shared * 2
    overrides = weights.overrides()
    assert {"shared.weight", "encoder.embed_tokens.weight", "lm_head.weight"} <= set(overrides)
    assert torch.equal(overrides["lm_head.weight"], shared * 2)
    weights["lm_head.weight"] = shared * 3  # untied for this call
    assert torch.equal(weights.overrides()["lm_head.weight"], shared * 3)
    assert torch.equal(weights.overrides()["decoder.embed_tokens.weight"], shared * 2)
    with pytest.raises(ValueError, match="shape"):
        weights["shared.weight"] = shared[:3]
    with pytest.raises(KeyError, match="no module parameter"):
        weights.name("no.such.tensor")
