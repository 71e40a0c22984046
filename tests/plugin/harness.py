"""Builds a throw-away project that runs the real properties/ with the real plugins."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Harness:
    pytester: pytest.Pytester
    cache: Path

    def models(self, text: str) -> None:
        (self.pytester.path / "models.yaml").write_text(text)

    def run(self, *args: str, baselines: bool = False) -> pytest.RunResult:
        """Run the property suite; baselines are off unless a test is about them."""
        self.pytester._monkeypatch.setenv("TERRAIN_CACHE", str(self.cache))
        self.pytester._monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        flags = () if baselines else ("--no-baselines",)
        return self.pytester.runpytest_subprocess("properties", *flags, *args, timeout=300)

    def findings(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(
            (self.pytester.path / "reports" / "findings.json").read_text()
        )
        return data

    def page(self) -> str:
        """The findings page (reports/index.html)."""
        return (self.pytester.path / "reports" / "index.html").read_text()

    def test_log(self) -> str:
        """pytest-html's page (reports/tests.html)."""
        return (self.pytester.path / "reports" / "tests.html").read_text()


# The plugin tests count outcomes of these four weights-only properties (declared in
# terrain/checks/), run by a property file of the throw-away project; a test that needs
# the shipped property files names them.
PLUGIN_TEST_PROPERTIES = ("q_sparsity", "q_sparsity_scale_free", "crosslayer_corr", "simplex_cv")
_CHOSEN = """
import pytest

pytestmark = pytest.mark.weights
{tests}
"""
_TEST = """

def test_{name}(evaluate):
    evaluate({name!r})
"""


def make_harness(
    pytester: pytest.Pytester, cache: Path, properties: tuple[str, ...] = ()
) -> Harness:
    """A project with the repository's conftest, and `properties` (shipped property files)
    or, by default, one file running PLUGIN_TEST_PROPERTIES."""
    shutil.copy(REPO / "conftest.py", pytester.path / "conftest.py")
    (pytester.path / "properties").mkdir()
    for name in properties:
        shutil.copy(REPO / "properties" / name, pytester.path / "properties" / name)
    if not properties:
        tests = "".join(_TEST.format(name=n) for n in PLUGIN_TEST_PROPERTIES)
        (pytester.path / "properties" / "test_chosen.py").write_text(_CHOSEN.format(tests=tests))
    pytester.makeini(
        """
        [pytest]
        addopts = -p no:cacheprovider --dist=loadgroup
        filterwarnings =
            error
            ignore::FutureWarning:transformers
            ignore::UserWarning:transformers
            ignore::DeprecationWarning:transformers
        """
    )
    return Harness(pytester, cache)
