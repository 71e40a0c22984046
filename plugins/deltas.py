"""`--base-model NAME_OR_PATH`: the checkpoint the delta properties compare each model with.

The value is resolved the way `--model` values are (a models-file name, a checkpoint folder,
a hub id, a `package:` or `synthetic:` source). A base that cannot be resolved or opened, or
that shares no tensor with a selected model (another architecture), stops the run before
any test starts: a usage error naming it. Each process opens the base once (its config,
shard headers and memory maps: nothing is read until a delta pass runs) and every model
fixture hands it to its model (`LoadedModel.base`); the delta properties
(terrain/checks/delta.py) are not applicable without one.
"""

from __future__ import annotations

import pytest

from terrain.delta import comparable
from terrain.errors import TerrainError
from terrain.model import LoadedModel, load_model
from terrain.selection import select_models

from .options import settings

OPTION = "--base-model"
_BASE = pytest.StashKey["LoadedModel | None"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("terrain")
    group.addoption(
        OPTION,
        default=None,
        metavar="NAME_OR_PATH",
        help="base model of the delta properties (a name in the models file, a checkpoint "
        "folder or a hub id): every shared tensor is compared with it",
    )


def base_model(config: pytest.Config) -> LoadedModel | None:
    """The base model of this run, opened once per process (None without --base-model)."""
    if _BASE not in config.stash:
        config.stash[_BASE] = _open_base(config)
    return config.stash[_BASE]


def _usage(value: str, problem: object) -> pytest.UsageError:
    return pytest.UsageError(f"{OPTION} {value!r}: {problem}")


def _open_base(config: pytest.Config) -> LoadedModel | None:
    value = config.getoption("base_model")
    if value is None:
        return None
    run = settings(config)
    try:
        specs = select_models(run.models, [value], option=OPTION)
        if len(specs) != 1:
            raise _usage(value, f"names {len(specs)} models; a run has one base model")
        spec = specs[0]
        # The base is only read (the model's device runs the delta measures): no CUDA here.
        return load_model(spec, run.context_for(spec), device="cpu")
    except TerrainError as e:
        raise _usage(value, e) from None


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Check the base against every selected model before any test (on the controller)."""
    if config.getoption("base_model") is None or hasattr(config, "workerinput"):
        return
    base = base_model(config)
    assert base is not None
    run = settings(config)
    for spec in run.selected:
        try:
            model = load_model(spec, run.context_for(spec), device="cpu")
        except TerrainError:
            continue  # a model that cannot be opened fails its own tests, saying why
        try:
            comparable(model.anatomy, base.anatomy)
        except TerrainError as e:
            raise _usage(config.getoption("base_model"), e) from None
