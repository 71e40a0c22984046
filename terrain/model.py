"""A model under test: resolved source, checkpoint and anatomy, with its random-init null."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from terrain.anatomy import Anatomy, build_anatomy
from terrain.checkpoint import Checkpoint
from terrain.config import ModelSpec
from terrain.sources import SYNTHETIC_SEED, ResolvedSource, SourceContext, resolve
from terrain.synthetic import random_init_replica


@dataclass
class LoadedModel:
    spec: ModelSpec
    source: ResolvedSource
    checkpoint: Checkpoint
    anatomy: Anatomy
    device: str
    cache_dir: Path
    _null: LoadedModel | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def random_init(self) -> bool:
        return self.source.random_init

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
            self._null = open_model(null_spec, src, device=self.device, cache_dir=self.cache_dir)
        return self._null


def open_model(
    spec: ModelSpec, source: ResolvedSource, *, device: str, cache_dir: Path
) -> LoadedModel:
    checkpoint = Checkpoint(source.path, name=spec.name)
    checkpoint.validate()
    anatomy = build_anatomy(checkpoint, checkpoint.config, spec.family)
    return LoadedModel(spec, source, checkpoint, anatomy, device, cache_dir)


def load_model(spec: ModelSpec, ctx: SourceContext, *, device: str) -> LoadedModel:
    """Resolve, open and map one model; any TerrainError names the model and the fix."""
    source = resolve(spec.name, spec.source, ctx)
    return open_model(spec, source, device=device, cache_dir=ctx.cache_dir)
