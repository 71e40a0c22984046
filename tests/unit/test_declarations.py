"""The property declarations drive everything: the README's table, the models file's
validation, the baselines' tolerances, and every shipped property test names one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from terrain.baselines import Tolerance
from terrain.config import parse_models
from terrain.errors import ConfigError
from terrain.findings import Expected, Finding, Null
from terrain.property import (
    FRACTION,
    Evaluation,
    Expectation,
    Gauge,
    Property,
    Registry,
    declarations,
)
from terrain.report.property_table import END, START, property_table

REPO = Path(__file__).resolve().parents[2]


def test_the_readme_table_is_the_one_the_declarations_make() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start, end = readme.index(START), readme.index(END) + len(END)
    assert readme[start:end] == property_table(declarations()), (
        "the README's property table is stale: run `python scripts/readme_table.py`"
    )


def _evaluated_names() -> set[str]:
    """Every property name a shipped property test passes to `evaluate`."""
    names: set[str] = set()
    for path in (REPO / "properties").glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "evaluate":
                arg = node.args[0]
                if isinstance(arg, ast.Constant):
                    names.add(str(arg.value))
                elif isinstance(arg, ast.JoinedStr):  # wordnet_{similarity}_spearman
                    names |= {"wordnet_path_spearman", "wordnet_wup_spearman"}
    return names


def test_every_declared_property_has_a_test_and_every_test_a_declaration() -> None:
    assert _evaluated_names() == set(declarations().names())


def test_every_declaration_states_what_the_report_needs() -> None:
    for prop in declarations():
        assert prop.statistic, prop.name
        assert prop.claim, prop.name
        assert prop.source, prop.name
        assert prop.version >= 1, prop.name
        assert isinstance(prop.gauge, Gauge), prop.name
        assert prop.kind in ("weights", "forward", "text"), prop.name


def test_duplicate_names_are_refused() -> None:
    registry = Registry()
    prop = next(iter(declarations()))
    registry.register(prop)
    with pytest.raises(ValueError, match=f"property {prop.name!r} is declared twice"):
        registry.register(prop)


def _toy(model: object, expect: Expectation | None) -> Evaluation:
    band = expect.band if expect else None
    return Evaluation(
        Finding(
            model="m",
            property="toy_share",
            statistic="a share",
            value=0.25,
            expected=Expected(band.low, band.high) if band else None,
            null=Null(0.5, "analytic"),
        )
    )


def test_a_new_declaration_is_validated_and_tolerated_with_no_edit_elsewhere(
    tmp_path: Path,
) -> None:
    """A property declared in a registry of its own appears in the models file's
    validation (its band checked against its domain) and carries its tolerance."""
    registry = Registry()
    registry.register(
        Property(
            name="toy_share",
            statistic="a share",
            claim="a quarter",
            source="a test",
            version=1,
            tolerance=Tolerance(abs=0.125),
            domain=FRACTION,
            gauge=Gauge.INVARIANT,
            kind="weights",
            evaluate=_toy,
        )
    )
    path = tmp_path / "models.yaml"
    good = {"models": {"m": {"source": "x", "expect": {"toy_share": {"band": [0.2, 0.3]}}}}}
    spec = parse_models(good, path, registry).models["m"]
    expect = spec.expectation("toy_share")
    assert expect is not None
    assert _toy(None, expect).finding.verdict == "pass"
    assert spec.tolerance("toy_share", registry.get("toy_share").tolerance) == Tolerance(abs=0.125)
    bad = {"models": {"m": {"source": "x", "expect": {"toy_share": {"band": [0.5, 1.5]}}}}}
    with pytest.raises(ConfigError, match=r"a fraction lies in \[0, 1\]; the band \[0.5, 1.5\]"):
        parse_models(bad, path, registry)
    with pytest.raises(ConfigError, match="unknown property 'simplex_cv' under 'expect'"):
        parse_models(
            {"models": {"m": {"source": "x", "expect": {"simplex_cv": {}}}}}, path, registry
        )
