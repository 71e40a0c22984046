"""One parametrisation for every property: a session-scoped, indirect `model` per selected model.

Each param carries `xdist_group(name)` so that `--dist loadgroup` sends all of a model's
tests to one worker, which then loads it once. Marks added later (in
collection_modifyitems) are ignored by loadgroup, hence here.
"""

from __future__ import annotations

import pytest

from .options import settings


def _parametrizes_model_itself(metafunc: pytest.Metafunc) -> bool:
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if "model" in names:
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # The plugin is active wherever it is installed: a test that names its own `model`
    # values is someone else's and is left alone.
    if "model" not in metafunc.fixturenames or _parametrizes_model_itself(metafunc):
        return
    params = [
        pytest.param(spec, id=spec.name, marks=pytest.mark.xdist_group(spec.name))
        for spec in settings(metafunc.config).selected
    ]
    metafunc.parametrize("model", params, indirect=True, scope="session")
