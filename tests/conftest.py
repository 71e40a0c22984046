"""Shared fixtures of the self-tests: tiny random-init checkpoints built once per session."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from terrain.synthetic import random_init_replica

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "fixtures" / "configs"


@pytest.fixture(scope="session")
def replica_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("terrain-cache")


def build_tiny(name: str, cache: Path) -> Path:
    config = json.loads((CONFIGS / f"{name}.json").read_text())
    return random_init_replica(config, seed=0, cache_dir=cache, label=name)


@pytest.fixture(scope="session")
def tiny_bert(replica_cache: Path) -> Path:
    return build_tiny("bert-tiny", replica_cache)


@pytest.fixture(scope="session")
def tiny_t5(replica_cache: Path) -> Path:
    return build_tiny("t5-tiny", replica_cache)


@pytest.fixture
def bert_copy(tiny_bert: Path, tmp_path: Path) -> Path:
    """A writable copy of the tiny BERT checkpoint, for tests that damage it."""
    target = tmp_path / "bert-copy"
    shutil.copytree(tiny_bert, target)
    return target
