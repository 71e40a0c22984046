"""Near-zero correlation of weights across layers (seed notebook §4), one rule for all roles.

The statistic is the largest |cosine| of flattened same-role weights of adjacent layers.
Independent layers give cosines of mean 0 and sd 1/√n (n values per tensor), so the
largest of m such cosines is compared with the null of a maximum, not of one cosine: with
z = |c|·√n, P(max z ≤ x) = (2Φ(x) − 1)^m for m independent pairs. One rule bounds every
role of both properties (attention q/k/v/o; every other per-layer 2-D role): a role's
largest |c| must not exceed max(max_abs, z*/√n), where z* is the 0.999 quantile of the
largest of all m adjacent pairs in the property's scope (a family-wise bound; below it a
cosine cannot be told from 0). The null is the same statistic on the random-init seeds
when they have every layer, else the expected maximum under independence (analytic).
Gauge: the raw cosine moves under the per-head gauges and unit permutations; the aligned
counterpart is layer_variation (cross-layer similarity after the exact gauge).
"""

from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING, Annotated

from pydantic import Field
from scipy import integrate, stats

from terrain.checks import kit
from terrain.measures.crosslayer import RoleCorrelation
from terrain.report.plots import layer_matrices

if TYPE_CHECKING:
    from terrain.model import LoadedModel

ATTENTION = ("q", "k", "v", "o")
FAMILY_WISE = 1e-3  # the bound's chance of being exceeded by independent layers


class CrossLayerExpect(kit.Expectation):
    """The bound below which adjacent-layer cosines count as near zero."""

    max_abs: Annotated[float, Field(gt=0.0, le=1.0)] = 0.05


def max_z_quantile(m: int, p: float = 1 - FAMILY_WISE) -> float:
    """x with P(max of m independent |N(0,1)| ≤ x) = p."""
    return float(stats.norm.ppf((1.0 + p ** (1.0 / m)) / 2.0))


def expected_max_z(m: int) -> float:
    """E[max of m independent |N(0,1)|] = ∫₀^∞ 1 − (2Φ(x) − 1)^m dx."""
    value, _ = integrate.quad(lambda x: 1.0 - (2.0 * stats.norm.cdf(x) - 1.0) ** m, 0.0, 40.0)
    return float(value)


def max_z_pvalue(x: float, m: int) -> float:
    """P(max of m independent |N(0,1)| ≥ x) = 1 − (1 − 2·Φ̄(x))^m, the exact law of the
    statistic (not of one cosine); log1p/expm1 keep small tails exact."""
    tail = 2.0 * float(stats.norm.sf(x))
    return float(-math.expm1(m * math.log1p(-min(tail, 1.0 - 1e-300))))


def _in_scope(result: kit.BatteryResult, attention: bool) -> list[RoleCorrelation]:
    return [c for c in result.crosslayer.values() if (c.role in ATTENTION) == attention]


def _worst(roles: list[RoleCorrelation], max_abs: float) -> tuple[RoleCorrelation, float, int]:
    """The role farthest above its bound, that bound, and the pairs in scope."""
    pairs = sum(len(r.adjacent) for r in roles)
    z = max_z_quantile(pairs)

    def bound(r: RoleCorrelation) -> float:
        return max(max_abs, z / math.sqrt(r.n))

    worst = max(roles, key=lambda r: r.max_abs_adjacent / bound(r))
    return worst, bound(worst), pairs


def _evaluate(
    model: LoadedModel, expect: CrossLayerExpect | None, *, attention: bool
) -> kit.Evaluation:
    max_abs = (expect or CrossLayerExpect()).max_abs
    roles = _in_scope(model.battery(), attention)
    what = "attention q/k/v/o" if attention else "roles other than q/k/v/o"
    if not roles:
        raise kit.NotApplicableError(f"model {model.name!r}: no {what} in two or more layers")
    worst, bound, pairs = _worst(roles, max_abs)
    prop = "crosslayer_corr" if attention else "crosslayer_corr_mlp"
    source = (
        f"{expect.source if expect and expect.source else 'near-zero cross-layer correlation'}; "
        f"bound max({max_abs:g}, z*/√n), z* = {max_z_quantile(pairs):.3f} the "
        f"{1 - FAMILY_WISE:g} quantile of the largest of {pairs} independent |N(0,1)|"
    )

    def statistic(b: kit.BatteryResult) -> float | None:
        mine = _in_scope(b, attention)
        return _worst(mine, max_abs)[0].max_abs_adjacent if mine else None

    null = None
    if model.null_plan.full:
        null = kit.null_of(model, statistic)
    if null is None:
        max_z = float(max(r.max_abs_adjacent * math.sqrt(r.n) for r in roles))
        null = kit.Null(
            expected_max_z(pairs) / math.sqrt(worst.n),
            f"analytic: expected largest |cos| of {pairs} independent pairs of n={worst.n}",
            p_value=max_z_pvalue(max_z, pairs),
            p_method=f"exact law of the largest of {pairs} independent |z| = |cos|·√n",
        )
    finding = kit.finding(
        model,
        prop,
        statistic=f"max |cos| of adjacent-layer weights, {what} ({worst.stack}.{worst.role})",
        value=worst.max_abs_adjacent,
        expected=kit.Expected(None, bound, source),
        null=null,
        n=worst.n,
        details={
            "worst": f"{worst.stack}.{worst.role}",
            "adjacent_pairs": pairs,
            "max_z": float(max(r.max_abs_adjacent * math.sqrt(r.n) for r in roles)),
            "z_bound": max_z_quantile(pairs),
            "roles": [r.as_dict() for r in roles],
            "norm_roles": {
                k: {"adjacent_cosine": [float(x) for x in d.adjacent]}
                for k, d in model.battery().gain_directions.items()
            }
            if not attention
            else {},
        },
        tracked={
            f"{r.stack}.{r.role}" + ("" if attention else " max_abs_adjacent"): r.max_abs_adjacent
            for r in roles
        },
    )
    plot = partial(
        layer_matrices,
        {f"{r.stack}.{r.role}": r.matrix for r in roles},
        f"{model.name}: layer × layer cosine",
    )
    return kit.Evaluation(finding, (kit.Evidence("layer x layer cosine", plot),))


def _tracked_key(r: RoleCorrelation, attention: bool) -> str:
    """The baseline key of a role's largest |cos| (as each property first recorded it)."""
    return f"{r.stack}.{r.role}" + ("" if attention else " max_abs_adjacent")


def attention_crosslayer(model: LoadedModel, expect: CrossLayerExpect | None) -> kit.Evaluation:
    return _evaluate(model, expect, attention=True)


def other_crosslayer(model: LoadedModel, expect: CrossLayerExpect | None) -> kit.Evaluation:
    return _evaluate(model, expect, attention=False)


GAUGE_NOTE = (
    "the raw cosine of two layers moves under each layer's own per-head gauge and unit "
    "permutation; layer_variation aligns them by the exact gauge first"
)
for _name, _what, _fn, _version in (
    ("crosslayer_corr", "attention q/k/v/o", attention_crosslayer, 2),
    (
        "crosslayer_corr_mlp",
        "every other per-layer 2-D role (MLP, cross-attention, ...)",
        other_crosslayer,
        2,
    ),
):
    kit.declare(
        kit.Property(
            name=_name,
            statistic=f"max |cos| of flattened adjacent-layer weights, {_what}",
            claim=f"adjacent layers' {_what} weights are uncorrelated: every role's largest "
            "|cos| ≤ max(max_abs, z*/√n), z* the 0.999 quantile of the largest of all "
            "adjacent pairs under independence",
            source="seed notebook §4",
            version=_version,
            tolerance=kit.Tolerance(abs=0.01),
            domain=kit.FRACTION,
            gauge=kit.Gauge.DEPENDENT,
            gauge_note=GAUGE_NOTE,
            kind="weights",
            evaluate=_fn,
            expect=CrossLayerExpect,
            float32_arithmetic=True,  # measures/crosslayer.CosineGram's float32 products
        )
    )
