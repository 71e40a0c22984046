"""One `Family` object per architecture: everything terrain knows about it, declared once.

A family is one module of `terrain/families/` that ends in `register(Family(...))`. The
declaration holds the anatomy adapter (tensor rules, roles, dimensions), where its norms
sit and what it adds to a stored gain, where a config counts each stack's blocks, the
per-tower head layout, the symmetry describer, the reference forward, the call-census
prediction, the text convention and whether transformers can build its module. A
capability the family lacks is `Absent(reason)`, never left out: the lookups' errors and
docs/families.md say the reason.

Capabilities that differ between the model_types of one family (the call census, the
block counts, the text convention) are tables with one entry per model_type, each a value
or `Absent`; a declaration missing a model_type is refused.

This module holds no family code: the families are imported on the first lookup (as
`terrain.property.declarations()` imports `terrain.checks`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from terrain.errors import AnatomyError
from terrain.suggest import did_you_mean, known

if TYPE_CHECKING:
    from torch import nn

    from terrain.anatomy.base import Anatomy, TensorSource
    from terrain.reference.family import FamilyReference
    from terrain.symmetry.catalogue import Describer

T = TypeVar("T")
# A family's adapter: every tensor of a checkpoint placed by its config.
Builder = Callable[["TensorSource", Mapping[str, Any]], "Anatomy"]
# A two-tower config's heads of one stack: (query heads, key/value heads, d_head, where
# the numbers come from), or None when the stack has no section of its own.
HeadCount = tuple[int, int, int, str]
TowerHeads = Callable[[Mapping[str, Any], str], HeadCount | None]
# (config, architecture) -> leaf-module calls per kind in one forward (terrain.tracing).
Predictor = Callable[[Mapping[str, Any], str], dict[str, int]]
# The default pooling of a text representation (terrain.text_encoding.masked_mean).
MEAN_POOLING = (
    "mean of the last hidden states over the real tokens (attention mask 1), special "
    "tokens included"
)


@dataclass(frozen=True)
class Absent:
    """A capability the family does not have, and why (a non-empty reason)."""

    reason: str

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise ValueError("an absent capability needs its reason")


@dataclass(frozen=True)
class NamedLayout(Absent):
    """No transformers module (the reason says why); the checkpoint's tensors are laid out
    by name instead. `module(config, name)`: a module whose state dict holds every tensor
    of a checkpoint of `config`, initialised as the family initialises (under torch's
    current seed); `write_random_init(config, seed, folder, label)`: a seeded replica."""

    module: Callable[[Mapping[str, Any], str], nn.Module] = field(kw_only=True)
    write_random_init: Callable[[Mapping[str, Any], int, Path, str], None] = field(kw_only=True)


@dataclass(frozen=True)
class TransformersModule:
    """transformers builds the module: `AutoConfig.for_model(model_type)`, then the class
    named by `architectures[0]` of config.json (else `AutoModel.from_config`)."""


@dataclass(frozen=True)
class StackCount:
    """Where a config holds one stack's number of blocks (and its layer types)."""

    section: str | None  # None: the config's top level; else e.g. "text_config"
    key: str


@dataclass(frozen=True)
class Norms:
    """Where the family's norms sit, in words, and what the model adds to a stored gain to
    get the gain it multiplies by, per (stack, role) (0 elsewhere)."""

    placement: str
    offsets: Mapping[tuple[str, str], float] = field(default_factory=dict)

    def offset(self, stack: str, role: str) -> float:
        return self.offsets.get((stack, role), 0.0)


@dataclass(frozen=True)
class TextConvention:
    """How text goes through a checkpoint: the prompt wrapping every text
    (`prompt.format(text)`), which stack encodes it, and how a sentence is pooled."""

    stack: str
    prompt: str = "{}"
    pooling: str = MEAN_POOLING


PerType = Mapping[str, T | Absent]


def per_type(model_types: tuple[str, ...], value: T | Absent) -> dict[str, T | Absent]:
    """The same entry for every model_type of a family."""
    return dict.fromkeys(model_types, value)


@dataclass(frozen=True, eq=False)
class Family:
    """All terrain knows about one architecture (see the module docstring). One object per
    family: compared and hashed by identity."""

    name: str
    model_types: tuple[str, ...]
    anatomy: Builder  # tensor names -> roles, dimensions and shapes from the config
    norms: Norms
    heads: TowerHeads | Absent  # per-tower head layout (else the anatomy's dimensions)
    stack_counts: PerType[Mapping[str, StackCount]]  # anatomy stack -> where it is counted
    symmetry: Describer | Absent  # the checkpoint as layouts for terrain.symmetry
    reference: FamilyReference | Absent  # blocks and embeddings from the roles alone
    census: PerType[Predictor]  # leaf-module calls of one forward, from the config
    text: PerType[TextConvention]
    module: TransformersModule | Absent

    def __post_init__(self) -> None:
        if not self.model_types:
            raise ValueError(f"family {self.name!r} declares no model_type")
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                raise ValueError(f"family {self.name!r}: {f.name} is neither given nor Absent")
            if f.name in _PER_TYPE:
                if not isinstance(value, Mapping):
                    raise ValueError(f"family {self.name!r}: {f.name} is not a model_type table")
                missing = [t for t in self.model_types if value.get(t) is None]
                extra = [t for t in value if t not in self.model_types]
                if missing or extra:
                    raise ValueError(
                        f"family {self.name!r}: {f.name} must have one entry per model_type "
                        f"{list(self.model_types)} (missing {missing}, not of this family {extra})"
                    )

    def census_for(self, model_type: str) -> Predictor | Absent:
        return self.census[model_type]

    def counts_for(self, model_type: str) -> Mapping[str, StackCount] | Absent:
        return self.stack_counts[model_type]

    def text_for(self, model_type: str) -> TextConvention | Absent:
        return self.text[model_type]


_PER_TYPE = ("stack_counts", "census", "text")
CAPABILITIES = tuple(f for f in Family.__dataclass_fields__ if f not in ("name", "model_types"))


class FamilyRegistry:
    """Families by name; a duplicate name or model_type is refused."""

    def __init__(self) -> None:
        self._by_name: dict[str, Family] = {}

    def register(self, family: Family) -> Family:
        if family.name in self._by_name:
            raise ValueError(f"anatomy family {family.name!r} is registered twice")
        taken = {t: f.name for f in self._by_name.values() for t in f.model_types}
        for t in family.model_types:
            if t in taken:
                raise ValueError(f"model_type {t!r} already belongs to family {taken[t]!r}")
        self._by_name[family.name] = family
        return family

    def __iter__(self) -> Iterator[Family]:
        return iter(sorted(self._by_name.values(), key=lambda f: f.name))

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def find(self, name: str) -> Family | None:
        return self._by_name.get(name)

    def get(self, name: str) -> Family:
        try:
            return self._by_name[name]
        except KeyError:
            raise AnatomyError(
                f"unknown anatomy family {name!r}{did_you_mean(name, self._by_name)}; "
                f"known families: {known(self._by_name)}"
            ) from None

    def of_type(self, model_type: str) -> Family | None:
        """The family reading this config model_type, if any."""
        return next((f for f in self._by_name.values() if model_type in f.model_types), None)

    def model_types(self) -> list[str]:
        return [t for f in self._by_name.values() for t in f.model_types]


FAMILIES = FamilyRegistry()


def register(family: Family) -> Family:
    """Add a family to the global registry (each terrain/families/ module calls this)."""
    return FAMILIES.register(family)


def families() -> FamilyRegistry:
    """The registry with every shipped family loaded."""
    import terrain.families  # noqa: F401  (registration side effect)

    return FAMILIES


def family_names() -> list[str]:
    return families().names()


def get_family(name: str) -> Family:
    return families().get(name)


def find_family(name: str) -> Family | None:
    return families().find(name)


def family_of_type(model_type: object) -> Family | None:
    """The family of a config's model_type; None for a model_type no family reads."""
    return families().of_type(model_type) if isinstance(model_type, str) else None


def family_for_config(model_name: str, config: Mapping[str, Any]) -> Family:
    """The family whose adapter reads this config's `model_type`."""
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        raise AnatomyError(f"model {model_name!r}: config.json has no 'model_type' string")
    found = family_of_type(model_type)
    if found is not None:
        return found
    types = families().model_types()
    raise AnatomyError(
        f"model {model_name!r}: unknown architecture: config.json model_type {model_type!r} "
        f"has no anatomy adapter{did_you_mean(model_type, types)}; supported model types: "
        f"{known(types)}"
    )


def require(
    value: T | Absent | None, error: Callable[[str], Exception], what: str, known: str = ""
) -> T:
    """A declared capability, or `error` saying `what` is missing, why (an Absent one's
    reason; nothing more for a family or model_type no family reads), then `known`."""
    if value is None or isinstance(value, Absent):
        why = f": {value.reason}" if isinstance(value, Absent) else ""
        raise error(f"{what}{why}{known}")
    return value


def named_layout(config: Mapping[str, Any]) -> NamedLayout | None:
    """How a config's tensors are laid out by name when its family has no transformers
    module (open_clip); None when transformers builds it (or no family reads it)."""
    family = family_of_type(config.get("model_type"))
    module = None if family is None else family.module
    return module if isinstance(module, NamedLayout) else None


def providing(capability: str) -> list[str]:
    """Names of the families whose `capability` field is not Absent."""
    return [f.name for f in families() if not isinstance(getattr(f, capability), Absent)]
