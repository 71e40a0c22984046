"""Load-once model fixtures, and the count of loads per model and worker.

No CUDA is touched before the first model fixture runs (never at import or collection).
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

from terrain.config import ModelSpec
from terrain.devices import resolve_device
from terrain.errors import TerrainError
from terrain.memory import freeze_survivors
from terrain.model import LoadedModel, load_model

from .deltas import base_model
from .options import settings

# model name -> number of loads in this process; shipped to the controller at session end.
LOADS: Counter[str] = Counter()


def worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def model(request: pytest.FixtureRequest) -> LoadedModel:
    """The model under test, loaded at most once per worker.

    A model that cannot be loaded fails its own tests with one clear line; pytest caches
    the failure, so the load is not retried for each test.
    """
    spec: ModelSpec = request.param
    run = settings(request.config)
    LOADS[spec.name] += 1
    # Before the load (pytest released the previous model): the heap trims after each
    # property then collect the model's objects, not every import's.
    freeze_survivors()
    try:
        device = resolve_device(run.device)
        loaded = load_model(spec, run.context_for(spec), device=device, dtype=run.dtype)
        loaded.budget = run.memory_budget
        loaded.text_budget = run.text_budget
        loaded.base = base_model(request.config)
        return loaded
    except TerrainError as e:
        problem = str(e)
    # Outside the except block, so the report shows the one line, not a chained traceback.
    pytest.fail(f"cannot load model: {problem}", pytrace=False)
