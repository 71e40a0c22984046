"""Hidden-unit symmetries of the MLP: permutations, and scalings where the activation allows.

Permutation. y = W_down act(W_up x + b_up) (+ b_down), or gated
y = W_down (act(W_gate x) ⊙ W_up x): the activation acts unit by unit, so permuting the
rows of W_up, b_up, W_gate and the columns of W_down by the same σ only reorders the sum
over hidden units. It holds for every activation.

Scaling. Unit i may be scaled by c on its way in and by 1/c on its way out when
act(c·z)/c = act(z): for ReLU with c > 0 (positive homogeneity), and for the linear branch
of a gated MLP with any c ≠ 0 (act(g)·(c·u)/c = act(g)·u). GELU, SiLU, tanh-GELU are not
homogeneous, so a non-gated GELU MLP keeps only the permutations.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from terrain.symmetry.groups import log_uniform, permutation, signs
from terrain.symmetry.layout import Control, MlpLayout, NotApplicable, Symmetry, Transform
from terrain.symmetry.weights import Weights

PERMUTATION = "mlp_permutation"
SCALING = "mlp_scaling"


def _permute_in(w: Weights, lay: MlpLayout, sigma: torch.Tensor) -> None:
    for p in (lay.up, lay.gate):
        if p is None:
            continue
        W, b = w.read(p)
        sigma = sigma.to(W.device)
        w.write(p, W[sigma], None if b is None else b[sigma])


def _permute_out(w: Weights, lay: MlpLayout, sigma: torch.Tensor) -> None:
    W, b = w.read(lay.down)
    w.write(lay.down, W[:, sigma.to(W.device)], b)


def _scale_in(w: Weights, lay: MlpLayout, c: torch.Tensor, through_activation: bool) -> None:
    p = lay.gate if through_activation and lay.gate is not None else lay.up
    W, b = w.read(p)
    c = c.to(W)
    w.write(p, W * c.unsqueeze(1), None if b is None else b * c)


def _scale_out(w: Weights, lay: MlpLayout, c: torch.Tensor) -> None:
    W, b = w.read(lay.down)
    w.write(lay.down, W / c.to(W).unsqueeze(0), b)


def _d_ff(w: Weights, lay: MlpLayout) -> int:
    return int(w.read(lay.down)[0].shape[1])


def _permutation(layouts: Sequence[MlpLayout], matched: bool) -> Transform:
    def transform(w: Weights, gen: torch.Generator) -> None:
        for lay in layouts:
            sigma = permutation(_d_ff(w, lay), gen)
            _permute_in(w, lay, sigma)
            if matched:
                _permute_out(w, lay, sigma)

    return transform


def _scaling(
    layouts: Sequence[MlpLayout], *, inverse: bool, through_activation: bool, negative: bool
) -> Transform:
    """c on each unit's input (the activation's input, or the gated MLP's linear branch),
    1/c on its output when `inverse`."""

    def transform(w: Weights, gen: torch.Generator) -> None:
        for lay in layouts:
            n = _d_ff(w, lay)
            c = log_uniform(n, gen)
            if negative:
                c = -c
            elif lay.gate is not None and not through_activation:
                c = c * signs(n, gen)  # the linear branch admits any nonzero factor
            _scale_in(w, lay, c, through_activation)
            if inverse:
                _scale_out(w, lay, c)

    return transform


def _positively_homogeneous(layouts: Sequence[MlpLayout]) -> bool:
    return all(lay.activation == "relu" for lay in layouts)


def mlp_permutation(layouts: Sequence[MlpLayout]) -> Symmetry | NotApplicable:
    if not layouts:
        return NotApplicable(PERMUTATION, "the model has no MLP blocks")
    acts = ", ".join(sorted({lay.activation for lay in layouts}))
    controls = [
        Control(
            "unmatched_permutation",
            "permuting the input rows without the matching W_down columns sends each "
            "unit's activation to another unit's output weights",
            _permutation(layouts, matched=False),
        )
    ]
    if not _positively_homogeneous(layouts):  # for ReLU this is the mlp_scaling symmetry
        controls.append(
            Control(
                "positive_scaling_through_activation",
                f"c·z into {acts} and 1/c out: act(c·z)/c ≠ act(z) for a non-homogeneous "
                "activation",
                _scaling(layouts, inverse=True, through_activation=True, negative=False),
            )
        )
    return Symmetry(
        PERMUTATION,
        "σ on hidden units: rows of W_up, b_up (and W_gate) and columns of W_down permuted "
        f"together; the activation ({acts}) acts unit by unit",
        _permutation(layouts, matched=True),
        tuple(controls),
    )


def mlp_scaling(layouts: Sequence[MlpLayout]) -> Symmetry | NotApplicable:
    if not layouts:
        return NotApplicable(SCALING, "the model has no MLP blocks")
    plain = [lay for lay in layouts if lay.gate is None and lay.activation != "relu"]
    if plain:
        act = plain[0].activation
        return NotApplicable(
            SCALING,
            f"{act}(c·z) ≠ c·{act}(z) and the MLP is not gated: no per-unit scaling passes "
            "the activation, only permutations remain",
        )
    gated = all(lay.gate is not None for lay in layouts)
    derivation = (
        "gated MLP: the linear branch W_up row i × c (any c ≠ 0), W_down column i × 1/c"
        if gated
        else "ReLU(c·z) = c·ReLU(z) for c > 0: W_up row i and b_up,i × c, W_down column i × 1/c"
    )
    relu = _positively_homogeneous(layouts)
    return Symmetry(
        SCALING,
        derivation,
        _scaling(layouts, inverse=True, through_activation=False, negative=False),
        (
            Control(
                "no_inverse",
                "scaling unit i's input without 1/c on W_down column i scales its output",
                _scaling(layouts, inverse=False, through_activation=False, negative=False),
            ),
            Control(
                "negative_scaling_through_relu" if relu else "positive_scaling_of_gate",
                "ReLU(−c·z)/(−c) = ReLU(z) − z ≠ ReLU(z)"
                if relu
                else "the gate's activation is not homogeneous: act(c·g)/c ≠ act(g)",
                _scaling(layouts, inverse=True, through_activation=True, negative=relu),
            ),
        ),
    )
