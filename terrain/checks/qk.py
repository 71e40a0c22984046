"""The QK similarity manifold (seed notebook §4–6): the sign structure of the bilinear forms
attention scores are made of, each value beside the random-init replica.

What is forced, and so asserted (terrain/measures/qk.py has the derivations):
- on the residual stream each head's form is B_h = W_Q^hᵀ·W_K^h; its symmetric part is
  ½·AᵀJA with A = [W_Q^h; W_K^h], so by Sylvester's law of inertia it has exactly
  d_head positive and d_head negative eigenvalues whenever A has full rank: a sign
  balance of 0.5 for every full-rank head of every model, trained or not;
- the seed's head-space form W_Q·W_Kᵀ of a random-init model has balance 0.5 up to about
  one eigenvalue, because flipping the sign of W_K (same distribution) swaps its signs.
So the seed's "cross-attention QK balance locked at 0.500" needs its null beside it: the
replica's balance is 0.5 too. What training can move is the eigenvalue mass: the
positive share Σλ⁺/Σ|λ| of each head's residual form (measured).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from terrain.checks import kit
from terrain.measures.qk import QKLayer
from terrain.report.battery_plots import qk_sign_bars

if TYPE_CHECKING:
    from terrain.model import LoadedModel

FORCED = (
    "a 0.5 balance of the symmetric part is forced for any full-rank random product: "
    "W_K → −W_K (same distribution at init) swaps positive and negative eigenvalues, and "
    "their count fluctuates by about one eigenvalue; see the replica's value beside it"
)
# Random-init band: the count of positive eigenvalues has sd below one eigenvalue (about 0.8
# at n = 64…512 in 200 seeded draws, never more than 3 off); 4 eigenvalues of the smallest form.
SIGN_BAND_EIGENVALUES = 4


def _layers(result: kit.BatteryResult, *, cross: bool) -> list[QKLayer]:
    return [q for q in result.qk if q.cross == cross]


def _mean_balance(layers: list[QKLayer]) -> float:
    return float(np.mean([q.balance for q in layers]))


def _balance(model: LoadedModel, expect: kit.Expectation | None, *, cross: bool) -> kit.Evaluation:
    measured = _layers(model.battery(), cross=cross)
    if not measured:
        if cross:
            raise kit.NotApplicableError(
                f"model {model.name!r} has no cross-attention "
                f"({model.anatomy.family} has no encoder-decoder attention)"
            )
        skipped = model.battery().qk_skipped
        why = "; ".join(skipped.values()) or "no self-attention q/k"
        raise kit.NotApplicableError(f"model {model.name!r}: {why}")
    null = _layers(model.null_batteries()[0], cross=cross)
    prop = "qk_cross_attention_balance" if cross else "qk_symmetric_balance"
    what = "cross-attention layers" if cross else "self-attention layers"
    dim = min(q.n_positive + q.n_negative for q in measured)
    width = SIGN_BAND_EIGENVALUES / dim
    default = (
        kit.Expected(0.5 - width, 0.5 + width, "forced at random init: " + FORCED)
        if model.random_init
        else None
    )

    def statistic(b: kit.BatteryResult) -> float | None:
        layers = _layers(b, cross=cross)
        return _mean_balance(layers) if layers else None

    finding = kit.finding(
        model,
        prop,
        statistic=f"mean positive share of the nonzero eigenvalues of sym(W_Q·W_Kᵀ), {what}",
        value=_mean_balance(measured),
        expected=kit.band(expect, default),
        null=kit.null_of(model, statistic),
        n=len(measured),
        details={
            "claim": FORCED,
            "seed": "seed §6: T5-v1.1-XXL cross-attention balance 0.500 in all 24 layers",
            "gauge": (
                "W_Q·W_Kᵀ lives in head space: an invertible per-head gauge A leaves every "
                "score unchanged but changes its symmetric part unless A is orthogonal"
            ),
            "layers": [q.as_dict() for q in measured],
            "null_layers": [
                {"stack": q.stack, "layer": q.layer, "balance": q.balance} for q in null
            ],
        },
        tracked={
            **{f"{q.stack}.{q.layer} balance": q.balance for q in measured},
            **{f"{q.stack}.{q.layer} symmetry_deviation": q.symmetry_deviation for q in measured},
        },
    )
    title = "cross-attention sign balance" if cross else "sym(W_Q W_Kᵀ) sign balance"
    plot = partial(
        qk_sign_bars,
        [f"{q.stack}.{q.layer}" for q in measured],
        [q.balance for q in measured],
        [q.balance for q in null],
        f"{model.name}: {title}",
    )
    return kit.Evaluation(
        finding, (kit.Evidence("positive eigenvalue share per layer against the null", plot),)
    )


def symmetric_balance(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    return _balance(model, expect, cross=False)


def cross_attention_balance(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    return _balance(model, expect, cross=True)


def _head_values(layers: list[QKLayer], attr: str) -> np.ndarray:
    return np.concatenate([np.asarray(getattr(q, attr), dtype=np.float64) for q in layers])


def residual_inertia(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    measured = model.battery().qk
    if not measured:
        raise kit.NotApplicableError(f"model {model.name!r} has no attention q/k")
    if any(2 * q.d_head > q.d_model for q in measured):
        raise kit.NotApplicableError(f"model {model.name!r}: 2·d_head > d_model")
    balance = _head_values(measured, "residual_balance")
    deficient = sum(q.rank_deficient_heads for q in measured)
    default = kit.Expected(0.5 - 1e-12, 0.5 + 1e-12, "Sylvester's law of inertia (full-rank heads)")
    finding = kit.finding(
        model,
        "qk_residual_inertia",
        value=float(np.mean(balance)),
        expected=kit.band(expect, default),
        null=kit.null_of(
            model,
            lambda b: float(np.mean(_head_values(b.qk, "residual_balance"))) if b.qk else None,
        ),
        n=int(balance.size),
        details={
            "rank_deficient_heads": deficient,
            "off_balance_heads": [
                {
                    "stack": q.stack,
                    "layer": q.layer,
                    "cross": q.cross,
                    "head": h,
                    "balance": float(q.residual_balance[h]),
                }
                for q in measured
                for h in range(q.n_heads)
                if q.residual_balance[h] != 0.5
            ][:50],
        },
        tracked={"rank_deficient_heads": float(deficient)},
    )
    return kit.Evaluation(finding)


def positive_mass(model: LoadedModel, expect: kit.Expectation | None) -> kit.Evaluation:
    measured = _layers(model.battery(), cross=False)
    if not measured:
        raise kit.NotApplicableError(f"model {model.name!r} has no self-attention q/k")
    null = _layers(model.null_batteries()[0], cross=False)
    mass = _head_values(measured, "residual_positive_mass")

    def statistic(b: kit.BatteryResult) -> float | None:
        layers = _layers(b, cross=False)
        return float(np.mean(_head_values(layers, "residual_positive_mass"))) if layers else None

    finding = kit.finding(
        model,
        "qk_positive_mass",
        value=float(np.mean(mass)),
        expected=kit.band(expect),
        null=kit.null_of(model, statistic),
        n=int(mass.size),
        details={
            "per_layer": [
                {
                    "stack": q.stack,
                    "layer": q.layer,
                    "positive_mass": [float(x) for x in q.residual_positive_mass],
                    "symmetry_deviation": [float(x) for x in q.residual_symmetry_deviation],
                    "stable_rank": [float(x) for x in q.residual_stable_rank],
                }
                for q in measured
            ],
            "heads_above_0.6": int(np.sum(mass > 0.6)),
            "heads_below_0.4": int(np.sum(mass < 0.4)),
        },
        tracked={
            f"{q.stack}.{q.layer} positive_mass": float(np.mean(q.residual_positive_mass))
            for q in measured
        },
    )
    plot = partial(
        qk_sign_bars,
        [f"{q.stack}.{q.layer}" for q in measured],
        [float(np.mean(q.residual_positive_mass)) for q in measured],
        [float(np.mean(q.residual_positive_mass)) for q in null],
        f"{model.name}: positive eigenvalue mass of the residual QK form (mean over heads)",
    )
    return kit.Evaluation(
        finding, (kit.Evidence("positive mass per layer against the null", plot),)
    )


HEAD_SPACE = (
    "W_Q·W_Kᵀ lives in head space: the per-head gauge W_Q^h → A·W_Q^h, W_K^h → A^-T·W_K^h "
    "keeps every score but changes its symmetric part unless A is orthogonal"
)
RESIDUAL_FORM = (
    "B_h = W_Q^hᵀ·W_K^h is unchanged by the per-head Q/K gauge (Aᵀ·A^-T = I); a residual "
    "rotation R maps it to Rᵀ·B_h·R, which keeps its spectrum"
)

# Found by the gauge contract (tests/unit/test_gauge_contract.py): llama-tiny's positive
# mass moved by 1.4% under residual_rotation, whose first step folds the norm gains γ into
# W_Q and W_K.
POSITIVE_MASS = (
    RESIDUAL_FORM + "; but folding the pre-attention norm's gain γ into W_Q, W_K (an exact "
    "reparametrisation) maps B_h to diag(γ)·B_h·diag(γ), a congruence: it keeps the signs "
    "(qk_residual_inertia) and changes the eigenvalues' masses"
)


def _declare(
    name: str, statistic: str, claim: str, evaluate: kit.Evaluate, gauge: kit.Gauge, note: str
) -> None:
    kit.Theme(
        source="seed notebook §4–6 (QK similarity manifold)",
        tolerance=kit.Tolerance(abs=0.0 if name == "qk_residual_inertia" else 0.01),
        gauge=gauge,
        gauge_note=note,
        kind="weights",
    ).declare(name, statistic, claim, evaluate, kit.FRACTION)


_declare(
    "qk_symmetric_balance",
    "mean positive share of the nonzero eigenvalues of sym(W_Q·W_Kᵀ), self-attention",
    "positive share of the eigenvalues of sym(W_Q·W_Kᵀ) per self-attention layer: 0.5 at "
    "random init by symmetry (asserted there), measured beside the null elsewhere",
    symmetric_balance,
    kit.Gauge.DEPENDENT,
    HEAD_SPACE,
)
_declare(
    "qk_cross_attention_balance",
    "mean positive share of the nonzero eigenvalues of sym(W_Q·W_Kᵀ), cross-attention",
    "the seed's cross-attention QK balance locked at 0.500: a random product is balanced by "
    "symmetry, so the null stands beside it (asserted 0.5 at random init only)",
    cross_attention_balance,
    kit.Gauge.DEPENDENT,
    HEAD_SPACE,
)
_declare(
    "qk_residual_inertia",
    "mean over heads of the positive share of the nonzero eigenvalues of sym(W_Q^hᵀW_K^h)",
    "each head's residual form has exactly d_head positive and d_head negative eigenvalues "
    "whenever [W_Q^h; W_K^h] has full rank (Sylvester's law of inertia), trained or not",
    residual_inertia,
    kit.Gauge.INVARIANT,
    RESIDUAL_FORM,
)
_declare(
    "qk_positive_mass",
    "mean over self-attention heads of Σλ⁺/Σ|λ| of sym(W_Q^hᵀW_K^h)",
    "what training can move in the residual form: its positive eigenvalue mass (0.5 on "
    "average at random init; above it for heads that match a token to itself)",
    positive_mass,
    kit.Gauge.DEPENDENT,
    POSITIVE_MASS,
)
