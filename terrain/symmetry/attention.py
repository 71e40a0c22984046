"""Per-head gauge symmetries of attention: the Q/K gauge and the V/O gauge.

Q/K. Head h scores tokens by qₕ(x)·kₕ(y) (times a constant). For any invertible A,
(A q)·(A⁻ᵀ k) = qᵀ Aᵀ A⁻ᵀ k = q·k, so W_Qʰ → A W_Qʰ, b_Qʰ → A b_Qʰ, W_Kʰ → A⁻ᵀ W_Kʰ,
b_Kʰ → A⁻ᵀ b_Kʰ leaves every score, hence the function, unchanged: the full GL(d_head)
per head, when nothing acts on q and k between the projection and the dot product.
What acts there cuts the group down:
- RoPE rotates pair f of q at position m by R(mθ_f); the score is qᵀAᵀR((n−m)θ)A⁻ᵀk, equal
  to qᵀR((n−m)θ)k for every offset only if A commutes with every R(mθ): on each pair A is
  a scaled rotation s·R(φ), free (unrotated) coordinates keep GL.
- an RMS norm on q and k (Qwen3: per head, gain shared by all heads; OLMo-3: over all
  heads at once, gain per channel) commutes with A only if A is orthogonal (scaling is
  normalised away, the eps term aside) and A·diag(g) = diag(g')·A for a new gain g':
  per pair, a rotation by a multiple of π/2 (a quarter turn swaps the pair's gains) — by
  any angle only where the pair's gains are equal. With a shared per-head gain the
  quarter turns must be the same in every head; signs (π) stay free per head.
- GQA: one key head serves a group of query heads, so all heads of a group share one A.

V/O. Head h adds O^h Σ p v_h to the output; p sums to one and does not depend on v, so
W_Vʰ → B W_Vʰ, b_Vʰ → B b_Vʰ, O^h → O^h B⁻¹ is exact for any invertible B per value head
(one B per GQA group: the value head is shared by the group's query heads). An elementwise
output gate σ(g_h) ⊙ (Σ p v) between attention and O (Qwen3.5) commutes with B only if B is
monomial (B = D·P, nonzero diagonal times a permutation), with the gate rows of every
query head of the group permuted by P: σ(P g) ⊙ D P z = D P (σ(g) ⊙ z).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from terrain.symmetry.groups import (
    RotaryPairs,
    block_map,
    invertible,
    log_uniform,
    orthogonal,
    pair_rotations,
    permutation,
    rotary_commutant,
    rotation2,
    signs,
)
from terrain.symmetry.layout import (
    AttentionLayout,
    Control,
    NotApplicable,
    Symmetry,
    Transform,
)
from terrain.symmetry.weights import Projection, Weights

QK = "qk_gauge"
VO = "vo_gauge"

# Per key/value group: the map on q (and k gets its inverse transpose).
GroupMaps = list[torch.Tensor]
Sampler = Callable[[AttentionLayout, torch.Generator], GroupMaps]


def _map_rows(W: torch.Tensor, maps: Sequence[torch.Tensor], d: int, per: int) -> torch.Tensor:
    """Row block i of W (width d) → maps[i // per] @ block."""
    out = W.clone()
    for i in range(W.shape[0] // d):
        rows = slice(i * d, (i + 1) * d)
        out[rows] = maps[i // per].to(W) @ W[rows]
    return out


def _map_heads(w: Weights, p: Projection, maps: Sequence[torch.Tensor], d: int, per: int) -> None:
    """The same on map p's rows and on its bias, when it has one."""
    W, b = w.read(p)
    mapped_b = None if b is None else _map_rows(b.unsqueeze(1), maps, d, per).squeeze(1)
    w.write(p, _map_rows(W, maps, d, per), mapped_b)


def apply_qk(
    w: Weights,
    lay: AttentionLayout,
    q_maps: Sequence[torch.Tensor],
    k_maps: Sequence[torch.Tensor] | None,
) -> None:
    """q head h → q_maps[h // group]; k head g → k_maps[g] (None: K untouched)."""
    d, per = lay.d_head, lay.group
    _map_heads(w, lay.q, q_maps, d, per)
    if k_maps is not None:
        _map_heads(w, lay.k, k_maps, d, 1)


def _inverse_transposes(maps: GroupMaps) -> GroupMaps:
    return [torch.linalg.inv(a).T for a in maps]


def _permute_gains(w: Weights, lay: AttentionLayout, maps: GroupMaps) -> None:
    """g' = |A| g: the gains that make a signed pair permutation commute with the norm."""
    norm = lay.qk_norm
    assert norm is not None
    perms = [a.abs().round() for a in maps]
    if norm.scope == "head":
        for name in (norm.q_gain, norm.k_gain):
            g = w[name]
            w[name] = (perms[0].to(g) @ g.unsqueeze(1)).squeeze(1)
        return
    for name, per in ((norm.q_gain, lay.group), (norm.k_gain, 1)):
        g = w[name]
        w[name] = _map_rows(g.unsqueeze(1), perms, lay.d_head, per).squeeze(1)


def _rope_or_free(lay: AttentionLayout) -> RotaryPairs:
    """The rotary layout; without RoPE every coordinate is free."""
    return lay.rope or RotaryPairs(lay.d_head, (), tuple(range(lay.d_head)))


def _normed_maps(lay: AttentionLayout, gen: torch.Generator) -> GroupMaps:
    """Orthogonal maps commuting with RoPE and with the q/k norm up to a gain permutation:
    per pair a turn by k·π/2 (quarter turns shared by all heads when the gain is shared),
    sign flips on free coordinates."""
    rope = _rope_or_free(lay)
    n_pairs = len(rope.pairs)
    shared_turns = torch.randint(0, 2, (n_pairs,), generator=gen)
    maps: GroupMaps = []
    for _ in range(lay.n_kv_heads):
        turns = (
            shared_turns
            if lay.qk_norm is not None and lay.qk_norm.scope == "head"
            else torch.randint(0, 2, (n_pairs,), generator=gen)
        )
        flips = torch.randint(0, 2, (n_pairs,), generator=gen)
        blocks = [
            rotation2(float(t) * torch.pi / 2 + float(f) * torch.pi)
            for t, f in zip(turns.tolist(), flips.tolist(), strict=True)
        ]
        free = torch.diag(signs(len(rope.free), gen)) if rope.free else None
        maps.append(block_map(rope, blocks, free))
    return maps


def _qk_group(lay: AttentionLayout, gen: torch.Generator) -> GroupMaps:
    if lay.qk_norm is not None:
        return _normed_maps(lay, gen)
    if lay.rope is not None:
        return [rotary_commutant(lay.rope, gen) for _ in range(lay.n_kv_heads)]
    return [invertible(lay.d_head, gen) for _ in range(lay.n_kv_heads)]


def _qk_symmetry(layouts: Sequence[AttentionLayout]) -> Transform:
    def transform(w: Weights, gen: torch.Generator) -> None:
        for lay in layouts:
            maps = _qk_group(lay, gen)
            apply_qk(w, lay, maps, _inverse_transposes(maps))
            if lay.qk_norm is not None:
                _permute_gains(w, lay, maps)

    return transform


def _each(layouts: Sequence[AttentionLayout], sample: Sampler, k_too: bool) -> Transform:
    def transform(w: Weights, gen: torch.Generator) -> None:
        for lay in layouts:
            maps = sample(lay, gen)
            apply_qk(w, lay, maps, _inverse_transposes(maps) if k_too else None)

    return transform


def _pair_symmetric_gains(layouts: Sequence[AttentionLayout]) -> Callable[[Weights], str | None]:
    """Inert when every q/k norm gain is equal within each rotary pair (as at init)."""

    def inert(w: Weights) -> str | None:
        for lay in layouts:
            norm = lay.qk_norm
            if norm is None:
                continue
            rope = _rope_or_free(lay)
            for name in (norm.q_gain, norm.k_gain):
                g = w[name].reshape(-1, lay.d_head)
                if rope.pairs:
                    i = torch.tensor([p[0] for p in rope.pairs])
                    j = torch.tensor([p[1] for p in rope.pairs])
                    if not torch.equal(g[:, i], g[:, j]):
                        return None
                if rope.free and not bool((g[:, list(rope.free)] == g[0, rope.free[0]]).all()):
                    return None
        return (
            "every q/k norm gain is equal within each rotary pair (as at initialisation), so "
            "a rotation of each pair commutes with the norm and is itself a symmetry"
        )

    return inert


def qk_gauge(layouts: Sequence[AttentionLayout]) -> Symmetry | NotApplicable:
    if not layouts:
        return NotApplicable(QK, "the model has no attention blocks")
    kinds = {(lay.rope is not None, lay.qk_norm is not None) for lay in layouts}
    normed = any(n for _, n in kinds)
    roped = any(r for r, _ in kinds)
    controls: tuple[Control, ...]
    if normed:
        scope = {lay.qk_norm.scope for lay in layouts if lay.qk_norm is not None}
        derivation = (
            "q/k RMS norm (scope: "
            + ", ".join(sorted(scope))
            + "): orthogonal maps commuting with RoPE and with the norm gain up to a gain "
            "permutation — a quarter or half turn of each rotary pair (quarter turns swap "
            "the pair's q_norm/k_norm gains), the same on Q and K"
        )
        controls = (
            Control(
                "rope_commuting_scaled_rotation",
                "s·R(φ) on each rotary pair with the inverse transpose on K is exact without "
                "the norm, but the RMS norm removes the scale s from q and k",
                _each(
                    layouts, lambda lay, g: [_scaled(lay, g) for _ in range(lay.n_kv_heads)], True
                ),
            ),
            Control(
                "pair_rotation_generic_angle",
                "a rotation of each rotary pair by a generic angle commutes with RoPE but not "
                "with unequal q/k norm gains inside a pair",
                _each(
                    layouts,
                    lambda lay, g: [
                        pair_rotations(_rope_or_free(lay), g) for _ in range(lay.n_kv_heads)
                    ],
                    True,
                ),
                inert=_pair_symmetric_gains(layouts),
            ),
        )
    elif roped:
        derivation = (
            "RoPE: per key/value head, a scaled rotation s·R(φ) on each rotary pair (the maps "
            "commuting with every rotary block), Q^h → A Q^h, K^h → A^-T K^h"
        )
        controls = (
            Control(
                "generic_head_rotation",
                "a Haar-random orthogonal A on Q and K of each head (a symmetry without RoPE) "
                "does not commute with the position-dependent rotary blocks",
                _each(
                    layouts,
                    lambda lay, g: [orthogonal(lay.d_head, g) for _ in range(lay.n_kv_heads)],
                    True,
                ),
            ),
        )
    else:
        derivation = (
            "no RoPE, no q/k norm: any invertible A per head, Q^h → A Q^h, b_Q^h → A b_Q^h, "
            "K^h → A^-T K^h, b_K^h → A^-T b_K^h keeps every q·k"
        )
        controls = (
            Control(
                "q_only",
                "A on Q without A^-T on K changes q·k to qᵀAᵀk",
                _each(
                    layouts,
                    lambda lay, g: [invertible(lay.d_head, g) for _ in range(lay.n_kv_heads)],
                    False,
                ),
            ),
        )
    gqa = any(lay.group > 1 for lay in layouts)
    if gqa:
        derivation += "; GQA: one map per key/value group, shared by its query heads"
    return Symmetry(QK, derivation, _qk_symmetry(layouts), controls)


def _scaled(lay: AttentionLayout, gen: torch.Generator) -> torch.Tensor:
    rope = _rope_or_free(lay)
    return rotary_commutant(rope, gen) if rope.pairs else invertible(lay.d_head, gen)


# V/O ----------------------------------------------------------------------------------


def apply_vo(
    w: Weights,
    lay: AttentionLayout,
    v_maps: Sequence[torch.Tensor],
    o_maps: Sequence[torch.Tensor] | None,
) -> None:
    """value head g → v_maps[g]; O's columns of query head h → · o_maps[h]⁻¹ (None: O kept)."""
    d = lay.d_head
    _map_heads(w, lay.v, v_maps, d, 1)
    if o_maps is None:
        return
    Wo, bo = w.read(lay.o)
    new = Wo.clone()
    for h in range(lay.n_heads):
        cols = slice(h * d, (h + 1) * d)
        new[:, cols] = Wo[:, cols] @ torch.linalg.inv(o_maps[h]).to(Wo)
    w.write(lay.o, new, bo)


def _monomial(d: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(D·P, P): a random signed, log-uniformly scaled permutation and its permutation."""
    perm = torch.eye(d, dtype=torch.float64)[permutation(d, gen)]
    scales = log_uniform(d, gen) * signs(d, gen)
    return scales.unsqueeze(1) * perm, perm


def _vo_symmetry(layouts: Sequence[AttentionLayout]) -> Transform:
    def transform(w: Weights, gen: torch.Generator) -> None:
        for lay in layouts:
            if lay.output_gate is None:
                maps = [invertible(lay.d_head, gen) for _ in range(lay.n_kv_heads)]
            else:
                pairs = [_monomial(lay.d_head, gen) for _ in range(lay.n_kv_heads)]
                maps = [m for m, _ in pairs]
                perms = [p for _, p in pairs]
                _map_heads(w, lay.output_gate, perms, lay.d_head, lay.group)
            apply_vo(w, lay, maps, [maps[h // lay.group] for h in range(lay.n_heads)])

    return transform


def _generic_through_gate(layouts: Sequence[AttentionLayout]) -> Transform:
    def transform(w: Weights, gen: torch.Generator) -> None:
        for lay in layouts:
            maps = [invertible(lay.d_head, gen) for _ in range(lay.n_kv_heads)]
            apply_vo(w, lay, maps, [maps[h // lay.group] for h in range(lay.n_heads)])

    return transform


def _v_only(layouts: Sequence[AttentionLayout]) -> Transform:
    def transform(w: Weights, gen: torch.Generator) -> None:
        for lay in layouts:
            apply_vo(w, lay, [invertible(lay.d_head, gen) for _ in range(lay.n_kv_heads)], None)

    return transform


def _per_query_head(layouts: Sequence[AttentionLayout]) -> Transform:
    def transform(w: Weights, gen: torch.Generator) -> None:
        for lay in layouts:
            per_head = [invertible(lay.d_head, gen) for _ in range(lay.n_heads)]
            apply_vo(w, lay, per_head[:: lay.group], per_head)

    return transform


def vo_gauge(layouts: Sequence[AttentionLayout]) -> Symmetry | NotApplicable:
    if not layouts:
        return NotApplicable(VO, "the model has no attention blocks")
    controls = [
        Control(
            "v_only",
            "B on V without B^-1 on O rescales and mixes every head's output",
            _v_only(layouts),
        ),
    ]
    derivation = (
        "any invertible B per value head: V^h → B V^h, b_V^h → B b_V^h, O^h → O^h B^-1 "
        "(attention weights sum to one and do not depend on V)"
    )
    if any(lay.output_gate is not None for lay in layouts):
        derivation = (
            "elementwise output gate: B = D·P per value head (nonzero diagonal times a "
            "permutation), V^h → B V^h, O^h → O^h B^-1, the gate rows of each query head "
            "permuted by P"
        )
        controls.append(
            Control(
                "generic_map_through_gate",
                "a generic invertible B with B^-1 on O (exact without the gate) does not "
                "commute with the elementwise gate σ(g) ⊙ ·",
                _generic_through_gate(layouts),
            )
        )
    if any(lay.group > 1 for lay in layouts):
        derivation += "; GQA: one B per key/value group, shared by its query heads"
        controls.append(
            Control(
                "per_query_head",
                "a different B for each query head of a GQA group cannot be undone: the group "
                "shares one value head",
                _per_query_head(layouts),
            )
        )
    return Symmetry(VO, derivation, _vo_symmetry(layouts), tuple(controls))
