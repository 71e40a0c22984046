"""Orthogonal rotation of the residual stream of pre-norm RMSNorm models (SliceGPT, QuaRot).

The stream h is only written (embedding rows, attention and MLP output maps) and read
through RMS norms: RMSNorm(h) = g ⊙ h / rms(h). Fold each norm's gain into the maps that
read it (W → W diag(g), g → 1). Then for orthogonal Q: rms(Q h) = rms(h), so with
embeddings E → E Qᵀ (rows e → Q e), writers W → Q W (b → Q b) and readers W → W Qᵀ every
sublayer sees the same normalised input and writes Q times its old output: the stream is
Q h throughout, and the output head (a reader of the final norm) gives the same logits.
Cross-attention reading an encoder's final norm is a reader of that norm.

Without folding, Q diag(g) ≠ diag(g) Q unless g is constant; a non-orthogonal map M
breaks rms(M h) = rms(h): both are negative controls.
"""

from __future__ import annotations

import torch

from terrain.symmetry.groups import invertible, orthogonal
from terrain.symmetry.layout import Control, NotApplicable, ResidualLayout, Symmetry, Transform
from terrain.symmetry.weights import Projection, Weights

ROTATION = "residual_rotation"


def _d_model(w: Weights, lay: ResidualLayout) -> int:
    return int(w[lay.embeddings[0]].shape[1])


def _apply(w: Weights, lay: ResidualLayout, M: torch.Tensor, *, fold: bool) -> None:
    """Stream h → M h: embeddings and writers by M, readers by M⁻¹ (after folding gains)."""
    M = M.to(dtype=w.dtype, device=w.device)
    M_inv = torch.linalg.inv(M)
    new: dict[str, torch.Tensor] = {}
    writes: list[tuple[Projection, torch.Tensor, torch.Tensor | None]] = []
    for name in lay.embeddings:
        new[name] = w[name] @ M.T
    for p in lay.writers:
        W, b = w.read(p)
        writes.append((p, M @ W, None if b is None else M @ b))
    for site in lay.norms:
        g = w[site.gain] + site.offset
        for p in site.readers:
            W, b = w.read(p)
            W = W * g.unsqueeze(0) if fold else W
            writes.append((p, W @ M_inv, b))
        if fold:
            new[site.gain] = torch.ones_like(g) - site.offset
    for name, value in new.items():
        w[name] = value
    for p, W, b in writes:
        w.write(p, W, b)


def _transform(lay: ResidualLayout, *, orthogonal_map: bool, fold: bool) -> Transform:
    def transform(w: Weights, gen: torch.Generator) -> None:
        d = _d_model(w, lay)
        M = orthogonal(d, gen) if orthogonal_map else invertible(d, gen)
        _apply(w, lay, M, fold=fold)

    return transform


def residual_rotation(lay: ResidualLayout | None, reason: str = "") -> Symmetry | NotApplicable:
    if lay is None:
        return NotApplicable(ROTATION, reason or "no pre-norm RMSNorm residual stream")

    def constant_gains(w: Weights) -> str | None:
        for site in lay.norms:
            g = w[site.gain]
            if not bool((g == g[0]).all()):
                return None
        return (
            "every norm gain is constant (as at initialisation): a constant gain commutes "
            "with any rotation, so the unfolded rotation is itself a symmetry"
        )

    return Symmetry(
        ROTATION,
        "fold each RMSNorm gain into its readers, then h → Q h for orthogonal Q: embeddings "
        "and writers by Q, readers by Qᵀ; rms(Q h) = rms(h)",
        _transform(lay, orthogonal_map=True, fold=True),
        (
            Control(
                "unfolded_rotation",
                "the same rotation with the gains left in the norms: Q diag(g) ≠ diag(g) Q",
                _transform(lay, orthogonal_map=True, fold=False),
                inert=constant_gains,
            ),
            Control(
                "non_orthogonal_map",
                "a generic invertible M (gains folded): rms(M h) ≠ rms(h), the norm does not "
                "commute with M",
                _transform(lay, orthogonal_map=False, fold=True),
            ),
        ),
    )
