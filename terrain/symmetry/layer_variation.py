"""Layer variation after gauge alignment: how far consecutive layers differ once the exact
weight symmetries of the architecture are divided out.

For consecutive layers (l, l+1) of one stack (same stack, same kind of attention, next
layout in order), the residual of a role is ‖W_{l+1} − W_l‖ / ‖W_l‖ (Frobenius), before
and after aligning layer l+1 to layer l. Layers are aligned in order (l+1 to the already
aligned l), all in one copy of the weights, so the aligned copy is itself a checkpoint whose
output must equal the original's: every map applied here is an exact symmetry of the
family, as terrain.symmetry derives it, and the property test checks that it is.

What each family gets (the catalogue's layouts decide, not the family name):

- V/O, every family whose catalogue has the vo_gauge without an output gate (BERT, T5,
  GPT-2, DINOv2, CLIP vision, Llama, Qwen3, OLMo-3): per value head (one map per GQA
  group) an orthogonal R fitted by Procrustes on the V rows together with the matching
  O columns of the group's query heads, V → R·V (and its bias), O → O·Rᵀ = O·R⁻¹.
  Qwen3.5's elementwise output gate σ(g) ⊙ · commutes only with scaled permutations, so
  V/O is not aligned there (recorded with the reason).
- Q/K without RoPE and without q/k norms (BERT with absolute positions, T5, GPT-2,
  DINOv2, CLIP vision): per key/value group an orthogonal R (R⁻ᵀ = R) fitted by Procrustes
  on the group's Q rows together with its K rows, Q → R·Q, K → R·K.
  With RoPE and no q/k norm (Llama): only maps commuting with every rotary block are
  exact; the orthogonal ones are a rotation of each frequency pair (fitted by 2-D
  Procrustes restricted to SO(2)) and any orthogonal map of the free (unrotated)
  coordinates. With q/k RMS norms (Qwen3, OLMo-3, Qwen3.5) only quarter and half turns of
  a pair (with the matching gain permutation) are left, a discrete group not fitted here:
  Q/K is not aligned (recorded with the reason). Where the catalogue marks the qk_gauge
  not applicable (BERT with relative position terms on q and k) it is not aligned either.
- MLP, every family: a hidden-unit permutation σ by linear_sum_assignment on the cosine
  of the input rows (gate|up concatenated for gated MLPs), rows of up/gate (and biases)
  and columns of down permuted by σ. It holds for every activation.

Roles without an applicable alignment keep their unaligned residual (after = before).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from statistics import median
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from terrain.symmetry.attention import QK, VO, apply_qk, apply_vo
from terrain.symmetry.groups import RotaryPairs, block_map
from terrain.symmetry.layout import Architecture, AttentionLayout, MlpLayout
from terrain.symmetry.mlp import PERMUTATION
from terrain.symmetry.weights import Projection, Weights

ROLES = ("q", "k", "v", "o", "mlp_gate", "mlp_up", "mlp_down")


def procrustes(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """The orthogonal R minimising ‖R·source − target‖ (columns are samples): R = U Vᵀ with
    target·sourceᵀ = U Σ Vᵀ."""
    u, _, vh = torch.linalg.svd(target.to(torch.float64) @ source.to(torch.float64).T)
    r: torch.Tensor = u @ vh
    return r


def rotation_procrustes(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """The 2×2 rotation R(φ) (det +1) minimising ‖R·source − target‖ for 2-row blocks."""
    m = source.to(torch.float64) @ target.to(torch.float64).T
    phi = math.atan2(float(m[0, 1] - m[1, 0]), float(m[0, 0] + m[1, 1]))
    c, s = math.cos(phi), math.sin(phi)
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)


def rotary_procrustes(
    rope: RotaryPairs, target: torch.Tensor, source: torch.Tensor
) -> torch.Tensor:
    """An orthogonal map commuting with RoPE: a rotation per frequency pair, any orthogonal
    map on the free coordinates, each fitted by Procrustes."""
    blocks = [rotation_procrustes(target[[i, j]], source[[i, j]]) for i, j in rope.pairs]
    free = None
    if rope.free:
        idx = list(rope.free)
        free = procrustes(target[idx], source[idx])
    return block_map(rope, blocks, free)


def permutation_by_cosine(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """σ maximising Σ_i cos(target_i, source_σ(i)) over rows (linear_sum_assignment)."""
    a = torch.nn.functional.normalize(target.to(torch.float64), dim=1)
    b = torch.nn.functional.normalize(source.to(torch.float64), dim=1)
    cost = -(a @ b.T).cpu().numpy()
    rows, cols = linear_sum_assignment(cost)
    sigma = np.empty_like(cols)
    sigma[rows] = cols
    return torch.as_tensor(sigma, dtype=torch.long)


def relative_residual(new: torch.Tensor, ref: torch.Tensor) -> float:
    a, b = new.to(torch.float64), ref.to(torch.float64)
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b).clamp_min(1e-300))


# Policies ----------------------------------------------------------------------------


def qk_policy(arch: Architecture, lay: AttentionLayout) -> tuple[str | None, str]:
    """(kind, why): kind "orthogonal", "rotary" or None (not aligned, why says why)."""
    if QK in arch.not_applicable:
        return None, f"qk_gauge not applicable: {arch.not_applicable[QK]}"
    if lay.qk_norm is not None:
        return None, (
            "q/k RMS norm: only quarter/half turns of each rotary pair (with a gain "
            "permutation) are exact, a discrete group not fitted here"
        )
    if lay.rope is not None:
        return (
            "rotary",
            "RoPE: a rotation per frequency pair (2-D Procrustes), orthogonal on free coords",
        )
    return "orthogonal", "no RoPE, no q/k norm: per-head orthogonal Procrustes on Q and K rows"


def vo_policy(arch: Architecture, lay: AttentionLayout) -> tuple[bool, str]:
    if VO in arch.not_applicable:
        return False, f"vo_gauge not applicable: {arch.not_applicable[VO]}"
    if lay.output_gate is not None:
        return False, (
            "elementwise output gate: only scaled permutations commute with σ(g) ⊙ ·, "
            "orthogonal V/O maps are not symmetries"
        )
    return True, "per value head orthogonal Procrustes on V rows and O columns"


def mlp_policy(arch: Architecture) -> tuple[bool, str]:
    if PERMUTATION in arch.not_applicable:
        return False, f"mlp_permutation not applicable: {arch.not_applicable[PERMUTATION]}"
    return True, "hidden-unit permutation by linear_sum_assignment on input-row cosines"


# Fitting and applying ----------------------------------------------------------------


def _heads(W: torch.Tensor, d: int) -> list[torch.Tensor]:
    return [W[h * d : (h + 1) * d] for h in range(W.shape[0] // d)]


def align_attention(
    w: Weights, arch: Architecture, ref: AttentionLayout, lay: AttentionLayout
) -> dict[str, str]:
    """Align `lay` to `ref` in w (in place); returns what was applied per gauge."""
    done: dict[str, str] = {}
    d, per = lay.d_head, lay.group
    kind, why = qk_policy(arch, lay)
    if kind is not None:
        q0, q1 = _heads(w.read(ref.q)[0], d), _heads(w.read(lay.q)[0], d)
        k0, k1 = _heads(w.read(ref.k)[0], d), _heads(w.read(lay.k)[0], d)
        maps = []
        for g in range(lay.n_kv_heads):
            tgt = torch.cat([*q0[g * per : (g + 1) * per], k0[g]], dim=1)
            src = torch.cat([*q1[g * per : (g + 1) * per], k1[g]], dim=1)
            if kind == "rotary":
                assert lay.rope is not None
                maps.append(rotary_procrustes(lay.rope, tgt, src))
            else:
                maps.append(procrustes(tgt, src))
        apply_qk(w, lay, maps, maps)  # R orthogonal: R^-T = R
    done[QK] = why if kind is not None else "not aligned: " + why
    ok, why = vo_policy(arch, lay)
    if ok:
        v0, v1 = _heads(w.read(ref.v)[0], d), _heads(w.read(lay.v)[0], d)
        o0, o1 = _heads(w.read(ref.o)[0].T, d), _heads(w.read(lay.o)[0].T, d)
        maps = []
        for g in range(lay.n_kv_heads):
            tgt = torch.cat([v0[g], *o0[g * per : (g + 1) * per]], dim=1)
            src = torch.cat([v1[g], *o1[g * per : (g + 1) * per]], dim=1)
            maps.append(procrustes(tgt, src))
        apply_vo(w, lay, maps, [maps[h // per] for h in range(lay.n_heads)])
    done[VO] = why if ok else "not aligned: " + why
    return done


def _rows(w: Weights, lay: MlpLayout) -> torch.Tensor:
    up = w.read(lay.up)[0]
    return up if lay.gate is None else torch.cat([w.read(lay.gate)[0], up], dim=1)


def permute_mlp(w: Weights, lay: MlpLayout, sigma: torch.Tensor) -> None:
    for p in (lay.up, lay.gate):
        if p is not None:
            W, b = w.read(p)
            s = sigma.to(W.device)
            w.write(p, W[s], None if b is None else b[s])
    W, b = w.read(lay.down)
    w.write(lay.down, W[:, sigma.to(W.device)], b)


# Hidden units matched by linear_sum_assignment at most: its float64 cost matrix of a 7B
# model's 11008 units alone is 0.97 GB, and its time grows with the cube of the width.
MAX_ASSIGNMENT_UNITS = 4096


def align_mlp(w: Weights, arch: Architecture, ref: MlpLayout, lay: MlpLayout) -> dict[str, str]:
    ok, why = mlp_policy(arch)
    units = w.read(ref.up)[0].shape[0]
    if ok and units > MAX_ASSIGNMENT_UNITS:
        ok, why = (
            False,
            (
                f"{units} hidden units exceed the {MAX_ASSIGNMENT_UNITS} that an exact assignment "
                "is run on (its cost matrix grows with the square of the width)"
            ),
        )
    if ok:
        permute_mlp(w, lay, permutation_by_cosine(_rows(w, ref), _rows(w, lay)))
    return {PERMUTATION: why if ok else "not aligned: " + why}


# The measure ---------------------------------------------------------------------------


def _site(where: str) -> tuple[str, int, str]:
    stack, i, kind = where.rsplit(".", 2)
    return stack, int(i), kind


def consecutive(layouts: Sequence[Any]) -> list[tuple[Any, Any]]:
    """Pairs of consecutive layouts of the same stack and kind (by layer index), in order."""
    groups: dict[tuple[str, str], list[tuple[int, Any]]] = {}
    for lay in layouts:
        stack, i, kind = _site(lay.where)
        groups.setdefault((stack, kind), []).append((i, lay))
    pairs = []
    for members in groups.values():
        ordered = [lay for _, lay in sorted(members, key=lambda m: m[0])]
        pairs += list(pairwise(ordered))
    return pairs


def _role_projections(att: AttentionLayout | None, mlp: MlpLayout | None) -> dict[str, Projection]:
    out: dict[str, Projection] = {}
    if att is not None:
        out.update(q=att.q, k=att.k, v=att.v, o=att.o)
    if mlp is not None:
        out.update(mlp_up=mlp.up, mlp_down=mlp.down)
        if mlp.gate is not None:
            out["mlp_gate"] = mlp.gate
    return out


@dataclass
class PairResidual:
    site: str  # e.g. "encoder.self 2→3"
    before: dict[str, float]
    after: dict[str, float]
    applied: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "pair": self.site,
            "before": self.before,
            "after": self.after,
            "applied": self.applied,
        }


@dataclass
class LayerVariation:
    pairs: list[PairResidual]
    # a copy of the weights with every layer aligned to its predecessor (None once dropped)
    aligned: Weights | None
    symmetries_used: set[str] = field(default_factory=set)

    def aligned_weights(self) -> Weights:
        """The aligned copy (an error once it was dropped to free its memory)."""
        if self.aligned is None:
            raise ValueError("the aligned copy of this layer variation was dropped")
        return self.aligned

    def values(self, which: str, role: str | None = None) -> list[float]:
        return [
            v
            for p in self.pairs
            for r, v in (p.before if which == "before" else p.after).items()
            if role is None or r == role
        ]

    def median(self, which: str = "after", role: str | None = None) -> float:
        vals = self.values(which, role)
        return float(median(vals)) if vals else float("nan")


def measure_layer_variation(
    arch: Architecture, weights: Weights, *, in_place: bool = False
) -> LayerVariation:
    """Align every layer to its (aligned) predecessor in a copy of `weights` (its writes
    included; `weights` is not changed); residuals per role before and after.

    `in_place`: align the module's own tensors instead of a copy (for a module used once
    and dropped, such as a real-size window); the residuals before alignment are then
    taken before each pair is aligned.
    """
    if in_place:
        w: Weights = weights.in_place()
    else:
        w = weights.fresh()
        for name in weights.written():  # start from the view as given, writes included
            w[name] = weights[name]
    base = w if in_place else weights
    pairs: list[PairResidual] = []
    used: set[str] = set()

    def residuals(
        which: Weights, a: dict[str, Projection], b: dict[str, Projection]
    ) -> dict[str, float]:
        return {
            r: relative_residual(which.read(b[r])[0], which.read(a[r])[0])
            for r in ROLES
            if r in a and r in b
        }

    for a, b in consecutive(arch.attention):
        before = residuals(base, _role_projections(a, None), _role_projections(b, None))
        applied = align_attention(w, arch, a, b)
        used |= {k for k, v in applied.items() if not v.startswith("not aligned")}
        after = residuals(w, _role_projections(a, None), _role_projections(b, None))
        stack, i, kind = _site(a.where)
        site = f"{stack}.{kind} {i}→{_site(b.where)[1]}"
        pairs.append(PairResidual(site, before, after, applied))
    for a, b in consecutive(arch.mlp):
        before = residuals(base, _role_projections(None, a), _role_projections(None, b))
        applied = align_mlp(w, arch, a, b)
        used |= {k for k, v in applied.items() if not v.startswith("not aligned")}
        after = residuals(w, _role_projections(None, a), _role_projections(None, b))
        stack, i, kind = _site(a.where)
        pairs.append(
            PairResidual(f"{stack}.{kind} {i}→{_site(b.where)[1]}", before, after, applied)
        )
    return LayerVariation(pairs, w, used)


def tolerance(arch: Architecture, used: set[str], dtype: torch.dtype) -> float:
    """1e-10 in float64; 1e-5 where the library computes a touched operation in float32."""
    if dtype != torch.float64 or any(s in arch.float32_ops for s in used):
        return 1e-5
    return 1e-10
