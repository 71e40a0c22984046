"""models.yaml: pure data, read with limits, validated into frozen objects against the
property declarations.

Reading refuses what a data file has no business holding: more than `MAX_BYTES`, bytes
that are not UTF-8, YAML anchors and aliases (the "billion laughs" expansion), tags,
nesting deeper than `MAX_DEPTH`, and duplicate keys (plain safe_load keeps the last).
Only `true` and `false` are booleans (YAML 1.2): YAML 1.1's `yes`, `on`, `y` stay strings,
so a switch such as `trust_remote_code: on` is refused instead of turning code on.
Validation is strict where a value is a switch or a number: `trust_remote_code` is a
YAML boolean or nothing, every band is finite and inside its property's domain
(terrain/property.py). Every error names the file, the model and the field, says what
was expected, and is cut to `MAX_MESSAGE` characters so
that no input is echoed at length.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails

from terrain.anatomy import family_names
from terrain.baselines import Tolerance
from terrain.errors import ConfigError
from terrain.property import Expectation, Registry
from terrain.suggest import did_you_mean, known

DType = Literal["float32", "float64", "bfloat16", "float16"]
MAX_BYTES = 1 << 20  # a models file is a page of text, not a megabyte
MAX_MESSAGE = 2000  # characters of any one error message
_SHOWN = 80  # characters of an offending value quoted in a message
MAX_DEPTH = 32  # nesting of mappings and lists; a models file needs four or five


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """A message cut to `limit` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return text[: limit - 40] + f" … ({len(text) - limit + 40} more characters)"


def _shown(value: object) -> str:
    return clip(repr(value), _SHOWN)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class ToleranceSpec(_Strict):
    """How far a value may move from its baseline: |new − old| ≤ abs + rel·|old|."""

    abs: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = 0.0
    rel: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = 0.0


class ModelSpec(_Strict):
    name: str
    source: Annotated[StrictStr, Field(min_length=1, max_length=4096)]
    family: StrictStr | None = None
    dtype: DType | None = None
    trust_remote_code: StrictBool = False
    default: StrictBool = False
    description: StrictStr | None = None
    # A training step: checkpoints of one architecture in a run are plotted in step order
    # when every one has a step (terrain/report/trajectory.py). An integer, not a string.
    step: Annotated[StrictInt, Field(ge=0)] | None = None
    # property -> its validated Expectation (terrain/property.py), checked in parse_models
    expect: Mapping[str, Any] = {}
    # Per-property baseline tolerances; properties not named keep their declared default.
    tolerances: Mapping[str, ToleranceSpec] = {}

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

    def expectation(self, prop: str) -> Expectation | None:
        found = self.expect.get(prop)
        return found if isinstance(found, Expectation) else None

    def tolerance(self, prop: str, default: Tolerance) -> Tolerance:
        spec = self.tolerances.get(prop)
        return Tolerance(spec.abs, spec.rel) if spec is not None else default


class ModelsConfig(_Strict):
    path: str
    models: Mapping[str, ModelSpec]

    def defaults(self) -> list[ModelSpec]:
        return [m for m in self.models.values() if m.default]


class _SafeDataLoader(yaml.SafeLoader):
    """A safe loader for plain data: no anchors or aliases, no duplicate keys, bounded
    nesting, YAML 1.2 booleans."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        # Bounded nesting: "[[[[…" thousands deep would otherwise end in a RecursionError.
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise ConfigError(
                    f"{self.name}:{mark.line + 1}: nested deeper than {MAX_DEPTH} levels; "
                    "a models file is a flat list of entries"
                )
            return self._compose_checked(parent, index)
        finally:
            self.depth -= 1

    def _compose_checked(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise ConfigError(
                f"{self.name}:{event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are "
                "not allowed in a models file: write the value out"
            )
        event = self.peek_event()  # type: ignore[no-untyped-call]
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise ConfigError(
                f"{self.name}:{event.start_mark.line + 1}: YAML anchors (&{anchor}) are not "
                "allowed in a models file: write the value out"
            )
        return super().compose_node(parent, index)


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigError(
                f"{loader.name}:{line}: duplicate key {_shown(key)} (first at line {seen[key]}); "
                "YAML would silently keep the last one"
            )
        seen[key] = line
    return loader.construct_mapping(node)


_SafeDataLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)
# YAML 1.2 booleans: drop YAML 1.1's (yes/no/on/off/y/n) and resolve true/false only.
_SafeDataLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SafeDataLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def read_yaml(path: Path) -> Any:
    """A models file's data, read within the limits of the module docstring."""
    try:
        # A FIFO or a device (/dev/zero) would block or never end: plain files only.
        if path.exists() and not path.is_dir() and not stat.S_ISREG(path.stat().st_mode):
            raise ConfigError(f"{path}: not a regular file (a pipe or a device?)")
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a models file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read models file ({e.strerror})") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{path}: over {MAX_BYTES >> 20} MiB, too large for a models file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {e.start} is {raw[e.start : e.start + 1]!r})"
        ) from None
    loader = _SafeDataLoader(text)
    loader.name = str(path)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise ConfigError(clip(f"{path}: not valid YAML: {e}")) from None
    finally:
        loader.dispose()


def load_models(path: Path, registry: Registry) -> ModelsConfig:
    """Read and validate a models file; raise ConfigError with every problem found."""
    return parse_models(read_yaml(path), path, registry)


def parse_models(data: Any, path: Path, registry: Registry) -> ModelsConfig:
    if data is None:
        raise ConfigError(f"{path}: the file is empty; expected a mapping with a 'models' key")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping with a 'models' key, got {type(data).__name__}"
        )
    extra = set(data) - {"models"}
    if extra:
        key = str(sorted(str(k) for k in extra)[0])
        raise ConfigError(
            f"{path}: unknown top-level key {_shown(key)}{did_you_mean(key, ['models'])}"
        )
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise ConfigError(f"{path}: 'models' must be a non-empty mapping of model name to entry")
    specs: dict[str, ModelSpec] = {}
    problems: list[str] = []
    for name, entry in models.items():
        if not isinstance(name, str) or not name.strip():
            problems.append(f"{path}: model name {_shown(name)} is not a non-empty string")
            continue
        if not isinstance(entry, dict):
            problems.append(
                f"{path}: model {_shown(name)}: expected a mapping, got {type(entry).__name__}"
            )
            continue
        found = _model(path, name, entry, registry)
        if isinstance(found, ModelSpec):
            specs[name] = found
        else:
            problems += found
    if problems:
        shown = problems[:20]
        if len(problems) > 20:
            shown.append(f"… and {len(problems) - 20} more problems")
        raise ConfigError("\n".join(clip(p) for p in shown))
    return ModelsConfig(path=str(path), models=specs)


def _model(
    path: Path, name: str, entry: dict[str, Any], registry: Registry
) -> ModelSpec | list[str]:
    """One entry validated, or its problems."""
    problems: list[str] = []
    raw_expect = entry.get("expect", {})
    try:
        spec = ModelSpec.model_validate({**entry, "name": name, "expect": {}})
    except ValidationError as e:
        return [_describe(path, name, err) for err in e.errors()]
    expect: dict[str, Expectation] = {}
    if not isinstance(raw_expect, dict):
        problems.append(f"{path}: model {name!r}: field 'expect': a mapping of property to entry")
        raw_expect = {}
    for prop_name, raw in raw_expect.items():
        where = f"{path}: model {name!r}: field 'expect.{prop_name}.band'"
        if prop_name not in registry:
            problems.append(_unknown_property(path, name, prop_name, "expect", registry))
            continue
        prop = registry.get(prop_name)
        try:
            expectation = prop.expectation(raw)
        except ValidationError as e:
            fields = list(prop.expect.model_fields)
            problems += [
                _describe(path, name, err, f"expect.{prop_name}", fields) for err in e.errors()
            ]
            continue
        if expectation.band is not None:
            problem = prop.domain.problem(expectation.band.low, expectation.band.high)
            if problem:
                problems.append(f"{where}: {problem}")
                continue
        expect[prop_name] = expectation
    for prop_name in spec.tolerances:
        if prop_name not in registry:
            problems.append(_unknown_property(path, name, prop_name, "tolerances", registry))
    if problems:
        return problems
    return spec.model_copy(update={"expect": expect})


def _unknown_property(path: Path, model: str, prop: object, where: str, registry: Registry) -> str:
    names = registry.names()
    return (
        f"{path}: model {model!r}: unknown property {_shown(prop)} under {where!r}"
        f"{did_you_mean(str(prop), names)}; known: {known(names)}"
    )


def _describe(
    path: Path, model: str, err: ErrorDetails, prefix: str = "", fields: list[str] | None = None
) -> str:
    loc = tuple(str(p) for p in err["loc"])
    field = ".".join((prefix, *loc) if prefix else loc) or "(entry)"
    if err["type"] == "extra_forbidden":
        key = loc[-1] if loc else "?"
        hint = _suggest(key, loc, fields)
        return f"{path}: model {model!r}: unknown field {field!r}{hint}"
    got = err.get("input")
    shown = "" if isinstance(got, dict) else f" (got {_shown(got)})"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{path}: model {model!r}: field {field!r}: {msg}{shown}"


def _suggest(key: str, loc: tuple[str, ...], fields: list[str] | None) -> str:
    """' (did you mean ...?)' among the fields allowed where `key` was found."""
    choices: list[str] = []
    if fields is not None and len(loc) == 1:
        choices = fields
    elif fields is None and len(loc) == 1:
        choices = [f for f in ModelSpec.model_fields if f not in ("name",)]
    elif fields is None and loc[:1] == ("tolerances",):
        choices = list(ToleranceSpec.model_fields)
    return did_you_mean(key, choices) + (f"; expected one of: {known(choices)}" if choices else "")
