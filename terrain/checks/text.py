"""What the text properties share: the tokenizer, the text budget, and the claim "above the
null by a margin whose paired interval excludes 0".

Text properties read text through the model's own tokenizer; a model without one (a vision
model, a replica) is not applicable. Those that run the whole module (layer geometry and
the WordNet alignment: hundreds of forwards of the model and of its null) have a work
budget on the CPU: at most `TEXT_CPU_PARAMETERS` parameters (settable with
`--text-budget`, or lifted on a GPU); above it they are not run, and the reason names the
option. Digits and categories read the token table only and run at any size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from terrain.bootstrap import Interval
from terrain.errors import TerrainError
from terrain.findings import Expected
from terrain.property import NotApplicableError
from terrain.text_encoding import NotApplicableError as NoTextError
from terrain.text_encoding import require_tokenizer, text_stack

if TYPE_CHECKING:
    from terrain.model import LoadedModel

TEXT_CPU_PARAMETERS = 250_000_000


class BudgetExceededError(TerrainError):
    """A property's work exceeds its budget on this device (the message names the option)."""


def tokenizer_of(model: LoadedModel) -> Any:
    """The model's tokenizer; a model without one has no text properties."""
    try:
        return require_tokenizer(model.tokenizer(), model.name)
    except NoTextError as e:
        raise NotApplicableError(str(e)) from None


def text_module(model: LoadedModel) -> Any:
    """The whole module for text work, within the text budget on the CPU."""
    budget = model.text_budget
    if model.device == "cpu" and model.parameters > budget:
        raise BudgetExceededError(
            f"model {model.name!r}: {model.parameters:,} parameters exceed the CPU text budget "
            f"of {budget:,} (hundreds of whole-model forwards, of the model and of its null); "
            "run on a GPU or raise it with --text-budget"
        )
    module = model.module()
    try:
        text_stack(module, model.name)
    except NoTextError as e:
        raise NotApplicableError(str(e)) from None
    return module


def above_null(value: float, null: float, difference: Interval, claim: str) -> Expected:
    """The band of the claim "value exceeds null by a margin whose paired CI excludes 0".

    With d = value - null and its interval [lo, hi], the claim lo >= 0 is the same as
    value >= null + (d - lo): a lower bound made of the null's measurement and the paired
    sampling noise, never a copied number.
    """
    margin = (value - null) - difference.low
    return Expected(low=null + margin, high=None, source=claim)
