"""models.yaml: pure data, read by a duplicate-refusing safe loader, validated into frozen objects.

Every error names the file, the model and the field, and says what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from terrain.anatomy import family_names
from terrain.baselines import DEFAULT_TOLERANCES, Tolerance, tolerance_for
from terrain.errors import ConfigError
from terrain.measures.sparsity import THRESHOLDS as SPARSITY_THRESHOLDS
from terrain.suggest import did_you_mean, known

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
DType = Literal["float32", "float64", "bfloat16", "float16"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Band(_Strict):
    """A closed interval [low, high]; written in YAML as `[low, high]`."""

    low: float
    high: float

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, data: Any) -> Any:
        if isinstance(data, list | tuple):
            if len(data) != 2:
                raise ValueError(f"a band is a list of two numbers [low, high], got {list(data)}")
            return {"low": data[0], "high": data[1]}
        return data

    @model_validator(mode="after")
    def _ordered(self) -> Band:
        if self.low > self.high:
            raise ValueError(f"band low end {self.low} is above its high end {self.high}")
        return self

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def as_list(self) -> list[float]:
        return [self.low, self.high]


class QSparsityExpect(_Strict):
    """Fraction of |w| below `threshold` in the Q projections, and its scale-free companion."""

    threshold: float = 0.1
    band: Band
    # Fraction of |w| below 0.1 * std(w): a weight-scale change cannot move it.
    scale_free_band: Band | None = None
    source: str | None = None

    @field_validator("threshold")
    @classmethod
    def _measured_threshold(cls, value: float) -> float:
        if value not in SPARSITY_THRESHOLDS:
            raise ValueError(f"threshold must be one of {list(SPARSITY_THRESHOLDS)}, got {value}")
        return value


class CrossLayerExpect(_Strict):
    """Bound on |cosine| of flattened same-role attention weights in adjacent layers."""

    max_abs: Annotated[float, Field(gt=0.0, le=1.0)] = 0.05
    source: str | None = None


class SimplexCVExpect(_Strict):
    """Band of the CV of Cayley–Menger volumes of random 5-token simplices of the embedding."""

    band: Band
    n_simplices: Annotated[int, Field(ge=10, le=10_000_000)] = 1000
    seed: int = 0
    source: str | None = None


class Expectations(_Strict):
    q_sparsity: QSparsityExpect | None = None
    crosslayer_corr: CrossLayerExpect = CrossLayerExpect()
    simplex_cv: SimplexCVExpect | None = None


class ToleranceSpec(_Strict):
    """How far a value may move from its baseline: |new − old| ≤ abs + rel·|old|."""

    abs: Annotated[float, Field(ge=0.0)] = 0.0
    rel: Annotated[float, Field(ge=0.0)] = 0.0


class ModelSpec(_Strict):
    name: str
    source: Annotated[str, Field(min_length=1)]
    family: str | None = None
    dtype: DType | None = None
    trust_remote_code: bool = False
    default: bool = False
    description: str | None = None
    expect: Expectations = Expectations()
    # Per-property baseline tolerances; properties not named keep their defaults.
    tolerances: Mapping[str, ToleranceSpec] = {}

    @field_validator("tolerances")
    @classmethod
    def _known_properties(cls, value: Mapping[str, ToleranceSpec]) -> Mapping[str, ToleranceSpec]:
        for name in value:
            if name not in DEFAULT_TOLERANCES:
                raise ValueError(
                    f"unknown property {name!r}{did_you_mean(name, DEFAULT_TOLERANCES)}; "
                    f"known: {known(DEFAULT_TOLERANCES)}"
                )
        return value

    def tolerance(self, prop: str) -> Tolerance:
        spec = self.tolerances.get(prop)
        return tolerance_for(prop, {prop: Tolerance(spec.abs, spec.rel)} if spec else {})

    @field_validator("family")
    @classmethod
    def _known_family(cls, value: str | None) -> str | None:
        if value is not None and value not in family_names():
            raise ValueError(
                f"unknown family {value!r}{did_you_mean(value, family_names())}; "
                f"known: {known(family_names())}"
            )
        return value

    @property
    def is_synthetic(self) -> bool:
        return self.source.startswith("synthetic:")


class ModelsConfig(_Strict):
    path: str
    models: Mapping[str, ModelSpec]

    def defaults(self) -> list[ModelSpec]:
        return [m for m in self.models.values() if m.default]


PROPERTY_NAMES = tuple(Expectations.model_fields)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate mapping keys (plain safe_load keeps the last)."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigError(
                f"{loader.name}:{line}: duplicate key {key!r} (first at line {seen[key]}); "
                "YAML would silently keep the last one"
            )
        seen[key] = line
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def load_models(path: Path) -> ModelsConfig:
    """Read and validate a models file; raise ConfigError with every problem found."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read models file ({e.strerror})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    except ConfigError as e:
        raise ConfigError(str(e).replace("<unicode string>", str(path))) from None
    return parse_models(data, path)


def parse_models(data: Any, path: Path) -> ModelsConfig:
    if data is None:
        raise ConfigError(f"{path}: the file is empty; expected a mapping with a 'models' key")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping with a 'models' key, got {type(data).__name__}"
        )
    extra = set(data) - {"models"}
    if extra:
        key = str(sorted(extra)[0])
        raise ConfigError(f"{path}: unknown top-level key {key!r}{did_you_mean(key, ['models'])}")
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise ConfigError(f"{path}: 'models' must be a non-empty mapping of model name to entry")
    specs: dict[str, ModelSpec] = {}
    problems: list[str] = []
    for name, entry in models.items():
        if not isinstance(entry, dict):
            problems.append(
                f"{path}: model {name!r}: expected a mapping, got {type(entry).__name__}"
            )
            continue
        try:
            specs[str(name)] = ModelSpec.model_validate({**entry, "name": str(name)})
        except ValidationError as e:
            problems += [_describe(path, str(name), err) for err in e.errors()]
    if problems:
        raise ConfigError("\n".join(problems))
    return ModelsConfig(path=str(path), models=specs)


_FIELDS_AT: dict[tuple[str, ...], list[str]] = {
    (): [f for f in ModelSpec.model_fields if f != "name"],
    ("expect",): list(Expectations.model_fields),
    ("expect", "q_sparsity"): list(QSparsityExpect.model_fields),
    ("expect", "crosslayer_corr"): list(CrossLayerExpect.model_fields),
    ("expect", "simplex_cv"): list(SimplexCVExpect.model_fields),
}


def _describe(path: Path, model: str, err: ErrorDetails) -> str:
    loc = tuple(str(p) for p in err["loc"])
    field = ".".join(loc) or "(entry)"
    if err["type"] == "extra_forbidden":
        parent, key = loc[:-1], loc[-1]
        choices = _FIELDS_AT.get(tuple(p for p in parent if p not in ("low", "high")), [])
        what = "property" if parent == ("expect",) else "field"
        return (
            f"{path}: model {model!r}: unknown {what} {field!r}{did_you_mean(key, choices)}; "
            f"expected one of: {known(choices)}"
        )
    got = err.get("input")
    shown = "" if isinstance(got, dict) else f" (got {got!r})"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{path}: model {model!r}: field {field!r}: {msg}{shown}"
