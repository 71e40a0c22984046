"""A property whose definition changes must bump its declared version.

Every declared property is evaluated on the tiny model its golden was recorded on
(tests/golden_values.py); a value or tracked value that moved while the declared version
did not fails, naming the property, the old and new value and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from terrain.property import declarations
from tests.golden_values import GOLDEN_FILE, REL, REL_FLOAT32, evaluate, models, same, sizes

GOLDENS: dict[str, Any] = json.loads(GOLDEN_FILE.read_text(encoding="utf-8"))
FIX = "bump its version in its declaration (terrain/checks/) and run scripts/record_goldens.py"


def test_every_declared_property_has_a_golden() -> None:
    assert set(GOLDENS) == set(declarations().names()), (
        f"goldens and declarations differ: {sorted(set(GOLDENS) ^ set(declarations().names()))}"
        "; run scripts/record_goldens.py"
    )


@pytest.fixture(scope="module")
def golden_models(replica_cache: Path) -> dict[str, Any]:
    return models(replica_cache)


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_a_changed_definition_bumps_its_version(name: str, golden_models: dict[str, Any]) -> None:
    golden = GOLDENS[name]
    prop = declarations().get(name)
    with sizes():
        now = evaluate(prop, golden_models[golden["model"]])
    assert now is not None, f"{name} no longer applies to {golden['model']!r}; {FIX}"
    if prop.version != golden["version"]:
        pytest.fail(
            f"{name}: declared version {prop.version}, golden recorded at version "
            f"{golden['version']}: run scripts/record_goldens.py",
            pytrace=False,
        )
    rel = REL_FLOAT32 if prop.kind == "text" or prop.float32_arithmetic else REL
    moved = {
        key: (golden["tracked"].get(key), now["tracked"].get(key))
        for key in set(golden["tracked"]) | set(now["tracked"])
        if not same(golden["tracked"].get(key), now["tracked"].get(key), rel)
    }
    if not same(golden["value"], now["value"], rel):
        moved["value"] = (golden["value"], now["value"])
    if moved:
        shown = "; ".join(f"{k}: {a} -> {b}" for k, (a, b) in sorted(moved.items())[:5])
        pytest.fail(
            f"{name} (version {prop.version}) gives other values on {golden['model']!r} than its "
            f"golden: {shown}; a changed definition must {FIX}",
            pytrace=False,
        )
