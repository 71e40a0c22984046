"""terrain is active wherever it is installed: a repository's own tests stay its own.

A project with no terrain properties runs as if terrain were absent: its tests that name
their own `model` values keep them, and no report folder or pytest-html line appears.
"""

from __future__ import annotations

import pytest

FOREIGN = """
import pytest


@pytest.mark.parametrize("model", ["resnet", "vit"])
def test_own_models(model):
    assert model in ("resnet", "vit")


def test_plain():
    assert True
"""

TERRAIN_STYLE = """
def test_uses_terrains_model(model):
    pass
"""


def test_a_project_of_its_own_is_left_alone(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_foreign=FOREIGN)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    assert not (pytester.path / "reports").exists()
    assert "Generated html report" not in result.stdout.str()
    assert "terrain:" not in result.stdout.str()


def test_a_test_asking_for_terrains_model_gets_the_selected_models(
    pytester: pytest.Pytester,
) -> None:
    """Control: the same plugin does parametrise a test that leaves `model` to it."""
    pytester.makepyfile(test_terrain_style=TERRAIN_STYLE)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--collect-only", "-q", "--model", "minilm"
    )
    result.stdout.fnmatch_lines(["*test_uses_terrains_model?minilm?*"])
