"""A TerrainError inside a property (a NaN tensor, an unplaceable shape) fails that test alone,
with its one-line message instead of a traceback through the measures."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from terrain.errors import TerrainError


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    try:
        return (yield)
    except TerrainError as e:
        problem = str(e)
    pytest.fail(problem, pytrace=False)
