"""Shared fixtures of the self-tests: tiny random-init checkpoints built once per session."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from terrain.synthetic import random_init_replica

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "fixtures" / "configs"
# Tiny configs whose transformers module the forward self-tests run (open_clip has none).
TINY_FORWARD_MODELS = (
    "bert-tiny",
    "t5-tiny",
    "t5-v1_1-tiny",
    "llama-tiny",
    "qwen3-tiny",
    "olmo3-tiny",
    "gpt2-tiny",
    "dinov2-tiny",
    "clip-vision-tiny",
    "qwen3_5-tiny",
)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread, and do not fight other jobs for the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
