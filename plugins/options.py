"""Command-line options and the run's settings (models file, selection, device)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pytest

from terrain.battery import DEFAULT_BUDGET
from terrain.checks.text import TEXT_CPU_PARAMETERS
from terrain.config import ModelsConfig, ModelSpec, load_models
from terrain.errors import ConfigError
from terrain.property import declarations
from terrain.selection import replica_hint, select_models
from terrain.sources import SourceContext
from terrain.synthetic import default_cache_dir
from terrain.wordnet import ENV_VAR as WORDNET_ENV
from terrain.workpool import MemoryBudget

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "float64", "bfloat16", "float16")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("terrain", "terrain: geometric properties of checkpoints")
    group.addoption(
        "--model",
        action="append",
        default=[],
        metavar="NAME_OR_PATH",
        help="model to measure: a name in the models file, a local checkpoint folder or a hub "
        "id; repeatable (default: the entries marked 'default: true')",
    )
    group.addoption(
        "--models-file",
        default=None,
        metavar="PATH",
        help="models file (default: models.yaml in the rootdir)",
    )
    group.addoption(
        "--device", choices=DEVICES, default="auto", help="where measures run (default: auto)"
    )
    group.addoption(
        "--dtype",
        choices=DTYPES,
        default=None,
        help="dtype to build modules in (overrides models.yaml)",
    )
    group.addoption(
        "--findings",
        default=None,
        metavar="PATH",
        help="findings JSON to write (default: findings.json beside the HTML report, or reports/)",
    )
    group.addoption(
        "--memory-budget",
        default=None,
        metavar="GIB",
        help="working memory of the weights-only passes beyond the memory-mapped tensors, "
        f"in GiB (default {DEFAULT_BUDGET.bytes / (1 << 30):g})",
    )
    group.addoption(
        "--text-budget",
        default=None,
        metavar="PARAMETERS",
        help="largest model (parameters) whose whole-module text properties run on a CPU "
        f"(default {TEXT_CPU_PARAMETERS:,}; a GPU has no such limit)",
    )
    parser.addini(
        "terrain_models_file", "models file (default: models.yaml in the rootdir, else terrain's)"
    )
    parser.addini("terrain_baseline_dir", "baselines folder (default: baselines/ in the rootdir)")
    parser.addini("terrain_reports", "folder of the findings report (default: reports/)")
    parser.addini("terrain_cache", "cache of synthetic replicas and windows")
    group.addoption(
        "--terrain-cache",
        default=None,
        metavar="DIR",
        help="cache of synthetic replicas (default: $TERRAIN_CACHE or ~/.cache/terrain)",
    )


@dataclass(frozen=True)
class RunSettings:
    models: ModelsConfig
    selected: tuple[ModelSpec, ...]
    device: str
    dtype: str | None
    cache_dir: Path
    synthetic_configs: tuple[Path, ...]
    memory_budget: MemoryBudget = DEFAULT_BUDGET
    text_budget: int = TEXT_CPU_PARAMETERS
    shipped_models: bool = False  # the models file is the one terrain ships

    def context_for(self, spec: ModelSpec) -> SourceContext:
        return SourceContext(
            self.synthetic_configs, self.cache_dir, replica_hint(self.models, spec)
        )


_SETTINGS = pytest.StashKey[RunSettings]()


def settings(config: pytest.Config) -> RunSettings:
    """The run's settings, read once per process; invalid input stops the run (UsageError)."""
    if _SETTINGS not in config.stash:
        config.stash[_SETTINGS] = _read_settings(config)
    return config.stash[_SETTINGS]


def chosen_path(config: pytest.Config, option: str, ini: str) -> Path | None:
    """A path from the command line, else from the ini file (relative to the ini file's
    folder, or the rootdir), else None."""
    given = config.getoption(option)
    if given:
        return Path(os.path.expanduser(str(given)))
    raw = config.getini(ini)
    if raw:
        base = config.inipath.parent if config.inipath else config.rootpath
        return base / os.path.expanduser(str(raw))
    return None


def shipped(relative: str) -> Path:
    """A file or folder of terrain's package data (terrain.fixtures)."""
    return Path(str(resources.files("terrain.fixtures").joinpath(relative)))


def models_path(config: pytest.Config) -> Path:
    """--models-file, else the ini's terrain_models_file, else models.yaml in the rootdir,
    else the models file terrain ships (its default models, e.g. minilm)."""
    chosen = chosen_path(config, "models_file", "terrain_models_file")
    if chosen is not None:
        return chosen
    local = config.rootpath / "models.yaml"
    return local if local.exists() else shipped("models.yaml")


def _read_settings(config: pytest.Config) -> RunSettings:
    root = config.rootpath
    path = models_path(config)
    cache = chosen_path(config, "terrain_cache", "terrain_cache")
    try:
        models = load_models(path, declarations())
        selected = select_models(models, config.getoption("model"))
    except ConfigError as e:
        raise pytest.UsageError(str(e)) from None
    return RunSettings(
        models=models,
        selected=tuple(selected),
        device=config.getoption("device"),
        dtype=config.getoption("dtype"),
        cache_dir=Path(cache) if cache else default_cache_dir(),
        synthetic_configs=_synthetic_dirs(Path(models.path).resolve().parent, root),
        memory_budget=_memory_budget(config.getoption("memory_budget")),
        text_budget=_positive_int("--text-budget", config.getoption("text_budget"))
        or TEXT_CPU_PARAMETERS,
        # compared as given: this repository's models.yaml links to the shipped file, but is
        # the project's own (its baselines are required)
        shipped_models=os.path.abspath(path) == os.path.abspath(shipped("models.yaml")),
    )


def _memory_budget(raw: str | None) -> MemoryBudget:
    if raw is None:
        return DEFAULT_BUDGET
    try:
        gib = float(raw)
    except ValueError:
        gib = math.nan
    if not (math.isfinite(gib) and 0.0 < gib <= 1 << 20):
        raise pytest.UsageError(
            f"--memory-budget: expected a positive number of GiB, got {raw[:40]!r}"
        )
    return MemoryBudget(int(gib * (1 << 30)))


def _positive_int(option: str, raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        value = int(raw.replace("_", "").replace(",", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise pytest.UsageError(f"{option}: expected a positive integer, got {raw[:40]!r}")
    return value


def _synthetic_dirs(*roots: Path) -> tuple[Path, ...]:
    """configs/ beside the models file (where terrain ships them), fixtures/configs beside
    it and in the rootdir, and the configs terrain ships."""
    dirs = [roots[0] / "configs"] + [r / "fixtures" / "configs" for r in roots]
    dirs.append(shipped("configs"))
    return tuple(dict.fromkeys(d for d in dirs if d.is_dir()))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "weights: reads tensors only, never builds the nn.Module")
    config.addinivalue_line("markers", "forward: builds the nn.Module and runs it")
    settings(config)  # fail fast on a bad models file, before collection
    local = config.rootpath / ".wordnet"
    if local.is_dir():  # a project's own corpus (terrain's repository: `make wordnet`)
        os.environ.setdefault(WORDNET_ENV, str(local))
    workers = _worker_count(config)
    if workers > 1:
        # Split the cores between the workers that have work: under loadgroup each model
        # is one worker's, so with fewer models than workers the idle ones need no share
        # (one model under -n 2 gets every core). Set on the controller, before xdist
        # starts the workers, so that their BLAS and OpenMP pools read it at import; and
        # in each worker for torch, already imported by then.
        busy = max(1, min(workers, len(settings(config).selected)))
        share = str(max(1, (os.cpu_count() or 1) // busy))
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, share)
        if hasattr(config, "workerinput"):
            import torch

            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def _worker_count(config: pytest.Config) -> int:
    worker = getattr(config, "workerinput", None)
    if worker is not None:
        return int(worker.get("workercount", 1))
    n = getattr(config.option, "numprocesses", None)
    return n if isinstance(n, int) else 1


@pytest.hookimpl(optionalhook=True)  # an xdist hook: pytest without xdist does not know it
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: no more workers than cores, nor than models (each model is one group)."""
    cores = os.cpu_count() or 1
    return max(1, min(cores, len(settings(config).selected)))
