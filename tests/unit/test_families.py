"""Every Family declares every capability or its absence with a reason; fixtures cover them."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from terrain.errors import AnatomyError
from terrain.family import (
    CAPABILITIES,
    Absent,
    Family,
    FamilyRegistry,
    NamedLayout,
    Norms,
    TextConvention,
    TransformersModule,
    families,
    family_names,
    family_of_type,
    get_family,
    per_type,
    providing,
    register,
)
from terrain.reference.family import FamilyReference
from terrain.report import family_table
from tests.unit.test_anatomy_families import REAL_SHAPE, TINY

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "fixtures" / "configs"
# Configs test_anatomy.py reads through the session fixtures tiny_bert and tiny_t5.
ANATOMY_TEST_CONFIGS = ("bert-tiny", "t5-tiny", *TINY, *REAL_SHAPE)
PER_TYPE = ("stack_counts", "census", "text")
# What a present (not Absent) capability must be.
PRESENT: Mapping[str, type | tuple[type, ...]] = {
    "norms": Norms,
    "reference": FamilyReference,
    "module": TransformersModule,
}


def _model_type(config_name: str) -> str:
    return str(json.loads((CONFIGS / f"{config_name}.json").read_text())["model_type"])


def _entries(family: Family, capability: str) -> dict[str, Any]:
    """The capability's values: one per model_type for the per-type tables."""
    value = getattr(family, capability)
    if capability in PER_TYPE:
        assert isinstance(value, Mapping), (family.name, capability)
        return {f"{capability}[{t}]": value.get(t) for t in family.model_types}
    return {capability: value}


@pytest.mark.parametrize("name", [f.name for f in families()])
def test_every_capability_is_given_or_absent_with_a_reason(name: str) -> None:
    family = get_family(name)
    assert set(CAPABILITIES) == {f.name for f in dataclasses.fields(Family)} - {
        "name",
        "model_types",
    }
    for capability in CAPABILITIES:
        for where, value in _entries(family, capability).items():
            assert value is not None, f"{name}: {where} is left out"
            if isinstance(value, Absent):
                assert value.reason.strip(), f"{name}: {where} is absent without a reason"
                continue
            kind = PRESENT.get(capability)
            if kind is not None:
                assert isinstance(value, kind), (name, where, value)
            elif capability == "text":
                assert isinstance(value, TextConvention)
                assert value.stack, (name, where)
                assert value.pooling, (name, where)
                assert "{}" in value.prompt, (name, where)
            elif capability == "stack_counts":
                assert isinstance(value, Mapping), (name, where)
                assert value, (name, where)
            else:
                assert callable(value), (name, where, value)
    assert family.norms.placement.strip(), name


def test_a_family_without_a_module_says_how_its_tensors_are_laid_out() -> None:
    for family in families():
        if isinstance(family.module, Absent):
            assert isinstance(family.module, NamedLayout), family.name
    open_clip = get_family("open_clip").module
    assert isinstance(open_clip, NamedLayout)
    assert open_clip.reason == "open_clip has no transformers module: it is read by tensor names"
    assert "open_clip" not in providing("symmetry") + providing("reference")


def test_every_shipped_config_has_a_family() -> None:
    unread = {
        path.stem: _model_type(path.stem)
        for path in sorted(CONFIGS.glob("*.json"))
        if family_of_type(_model_type(path.stem)) is None
    }
    assert unread == {}


def test_every_family_has_a_fixture_config_that_is_exercised() -> None:
    models = yaml.safe_load((REPO / "models.yaml").read_text())["models"]
    defaults = [
        str(entry["source"]).removeprefix("synthetic:")
        for entry in models.values()
        if entry.get("default") and str(entry["source"]).startswith("synthetic:")
    ]
    used = {*defaults, *ANATOMY_TEST_CONFIGS}
    assert all((CONFIGS / f"{name}.json").is_file() for name in used), used
    covered = {getattr(family_of_type(_model_type(name)), "name", None) for name in used}
    assert set(family_names()) <= covered


def _family(name: str, model_types: tuple[str, ...], **changes: Any) -> Family:
    """A declaration of a made-up family, every capability absent unless changed."""
    none = Absent("made up for a test")
    fields: dict[str, Any] = {
        "name": name,
        "model_types": model_types,
        "anatomy": get_family("bert").anatomy,
        "norms": Norms("none"),
        "heads": none,
        "stack_counts": per_type(model_types, none),
        "symmetry": none,
        "reference": none,
        "census": per_type(model_types, none),
        "text": per_type(model_types, none),
        "module": none,
    }
    fields.update(changes)
    return Family(**fields)


def test_registering_a_duplicate_name_or_model_type_is_refused() -> None:
    names = [f.name for f in families()]
    with pytest.raises(ValueError, match="anatomy family 'bert' is registered twice"):
        register(_family("bert", ("other",)))
    with pytest.raises(ValueError, match="model_type 'umt5' already belongs to family 't5'"):
        register(_family("t5-again", ("umt5",)))
    assert [f.name for f in families()] == names
    assert family_of_type("other") is None
    fresh = FamilyRegistry()
    fresh.register(_family("made-up", ("made_up",)))
    with pytest.raises(ValueError, match="already belongs to family 'made-up'"):
        fresh.register(_family("made-up-2", ("made_up", "more")))
    assert fresh.names() == ["made-up"]


def test_a_declaration_leaving_out_a_model_type_or_a_reason_is_refused() -> None:
    with pytest.raises(ValueError, match=r"census must have one entry per model_type"):
        _family("x", ("a", "b"), census={"a": Absent("not written")})
    with pytest.raises(ValueError, match=r"text must have one entry per model_type"):
        _family("x", ("a",), text={"a": Absent("no"), "z": Absent("no")})
    with pytest.raises(ValueError, match=r"census is not a model_type table"):
        _family("x", ("a",), census=Absent("not written"))
    with pytest.raises(ValueError, match=r"stack_counts must have one entry per model_type"):
        _family("x", ("a",), stack_counts={"a": None})
    with pytest.raises(ValueError, match="needs its reason"):
        Absent("  ")
    with pytest.raises(ValueError, match="symmetry is neither given nor Absent"):
        _family("x", ("a",), symmetry=None)


def test_lookups_name_the_known_families_and_suggest_the_closest() -> None:
    with pytest.raises(
        AnatomyError, match=r"unknown anatomy family 'brt' \(did you mean 'bert'\?\)"
    ):
        get_family("brt")
    assert family_of_type("clip_vision_model") is get_family("clip")
    assert family_of_type(None) is None


def test_the_documented_list_of_families_is_the_declared_one() -> None:
    text = (REPO / "docs" / "families.md").read_text(encoding="utf-8")
    start, end = text.find(family_table.START), text.find(family_table.END)
    assert 0 <= start < end, "docs/families.md has lost its markers"
    assert text[start : end + len(family_table.END)] == family_table.family_list(families()), (
        "docs/families.md is stale: run python scripts/readme_table.py"
    )
