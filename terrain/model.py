"""A model under test: resolved source, checkpoint and anatomy, with its random-init null."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from terrain.anatomy import Anatomy, build_anatomy
from terrain.checkpoint import Checkpoint, build_module, load_tokenizer
from terrain.config import ModelSpec
from terrain.sources import SYNTHETIC_SEED, ResolvedSource, SourceContext, resolve
from terrain.synthetic import random_init_replica

T = TypeVar("T")


@dataclass
class LoadedModel:
    spec: ModelSpec
    source: ResolvedSource
    checkpoint: Checkpoint
    anatomy: Anatomy
    device: str
    cache_dir: Path
    dtype: str | None = None  # --dtype, else models.yaml `dtype`, else float32
    _null: LoadedModel | None = field(default=None, repr=False)
    _modules: dict[str, Any] = field(default_factory=dict, repr=False)
    _tokenizer: Any = field(default=None, repr=False)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def random_init(self) -> bool:
        return self.source.random_init

    def module(self, dtype: str | None = None) -> Any:
        """The nn.Module (eval mode, on this model's device), built once per dtype.

        Only forward properties call this; weights-only properties never build it.
        """
        chosen = dtype or self.dtype or "float32"
        if chosen not in self._modules:
            self._modules[chosen] = build_module(
                self.checkpoint,
                dtype=chosen,
                device=self.device,
                trust_remote_code=self.spec.trust_remote_code,
            )
        return self._modules[chosen]

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """Compute once per worker and model (e.g. a streaming pass several properties share)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]  # type: ignore[no-any-return]

    def tokenizer(self) -> Any | None:
        """The checkpoint's tokenizer, or None when the folder ships none (e.g. replicas)."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.checkpoint, self.spec.trust_remote_code)
        return self._tokenizer or None

    def null(self) -> LoadedModel:
        """A seeded random-init replica of this model's config (itself when already random).

        Built on first use and cached on disk, keyed by config, seed and library versions.
        """
        if self.random_init:
            return self
        if self._null is None:
            label = f"{self.name} null (random init)"
            path = random_init_replica(
                self.checkpoint.config, seed=SYNTHETIC_SEED, cache_dir=self.cache_dir, label=label
            )
            src = ResolvedSource(label, f"null-of:{self.spec.source}", "synthetic", path, True)
            null_spec = ModelSpec(name=label, source=src.source, family=self.anatomy.family)
            self._null = open_model(
                null_spec, src, device=self.device, cache_dir=self.cache_dir, dtype=self.dtype
            )
        return self._null


def open_model(
    spec: ModelSpec,
    source: ResolvedSource,
    *,
    device: str,
    cache_dir: Path,
    dtype: str | None = None,
) -> LoadedModel:
    checkpoint = Checkpoint(source.path, name=spec.name)
    checkpoint.validate()
    anatomy = build_anatomy(checkpoint, checkpoint.config, spec.family)
    return LoadedModel(spec, source, checkpoint, anatomy, device, cache_dir, dtype or spec.dtype)


def load_model(
    spec: ModelSpec, ctx: SourceContext, *, device: str, dtype: str | None = None
) -> LoadedModel:
    """Resolve, open and map one model; any TerrainError names the model and the fix."""
    source = resolve(spec.name, spec.source, ctx)
    return open_model(spec, source, device=device, cache_dir=ctx.cache_dir, dtype=dtype)
