"""One parametrisation for every property: a session-scoped, indirect `model` per selected model.

Each param carries `xdist_group(name)` so that `--dist loadgroup` sends all of a model's
tests to one worker, which then loads it once. Marks added later (in
collection_modifyitems) are ignored by loadgroup, hence here.
"""

from __future__ import annotations

import pytest

from plugins.options import settings


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "model" not in metafunc.fixturenames:
        return
    params = [
        pytest.param(spec, id=spec.name, marks=pytest.mark.xdist_group(spec.name))
        for spec in settings(metafunc.config).selected
    ]
    metafunc.parametrize("model", params, indirect=True, scope="session")
