"""A model under test: resolved source, checkpoint and anatomy, its battery and its nulls."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import torch

from terrain.anatomy import Anatomy, build_anatomy
from terrain.architecture import model_class
from terrain.battery import DEFAULT_BUDGET, BatteryResult, StreamOptions, run_battery
from terrain.checkpoint import Checkpoint, check_float
from terrain.checks.text import TEXT_CPU_PARAMETERS
from terrain.config import ModelSpec
from terrain.delta import DeltaResult, run_deltas
from terrain.errors import DeltaError
from terrain.forward.runner import ForwardRunner
from terrain.gguf import GGUFCheckpoint, build_gguf_module, is_gguf, load_gguf_tokenizer
from terrain.gguf.requantize import Requantizer
from terrain.measures.norms import gain_offset
from terrain.modules import build_module, load_tokenizer
from terrain.null.model import NullModel, NullPlan, plan_for
from terrain.progress import Tracker
from terrain.sources import ResolvedSource, SourceContext, resolve
from terrain.workpool import MemoryBudget

T = TypeVar("T")

# A model's stored weights: safetensors (single or sharded) or one GGUF file.
AnyCheckpoint = Checkpoint | GGUFCheckpoint


@dataclass
class LoadedModel:
    spec: ModelSpec
    source: ResolvedSource
    checkpoint: AnyCheckpoint
    anatomy: Anatomy
    device: str
    cache_dir: Path
    dtype: str | None = None  # --dtype, else models.yaml `dtype`, else float32
    budget: MemoryBudget = DEFAULT_BUDGET
    text_budget: int = TEXT_CPU_PARAMETERS  # parameters of whole-module text work on a CPU
    base: LoadedModel | None = None  # --base-model: what the delta properties compare with
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
            build = (
                build_gguf_module if isinstance(self.checkpoint, GGUFCheckpoint) else build_module
            )
            self._modules[chosen] = build(
                self.checkpoint,  # type: ignore[arg-type]  # each builder takes its own kind
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
            ckpt = self.checkpoint
            self._tokenizer = (
                load_gguf_tokenizer(ckpt)
                if isinstance(ckpt, GGUFCheckpoint)
                else load_tokenizer(ckpt, self.spec.trust_remote_code)
            )
        return self._tokenizer or None

    @cached_property
    def parameters(self) -> int:
        """Stored parameters (every tensor of the checkpoint)."""
        total = 0
        for shape in self.checkpoint.tensor_shapes().values():
            n = 1
            for s in shape:
                n *= s
            total += n
        return total

    def battery(self) -> BatteryResult:
        """The weights-only battery, computed once per worker (with progress)."""

        def compute() -> BatteryResult:
            with Tracker(self.name, "weights", unit="B") as tracker:
                return run_battery(
                    self.anatomy,
                    config=self.checkpoint.config,
                    device=self.device,
                    budget=self.budget,
                    options=StreamOptions(gain_offset=self._gain_offset),
                    tracker=tracker,
                )

        return self.memo("battery", compute)

    def deltas(self) -> DeltaResult:
        """Every shared tensor against the base model, computed once per worker (with
        progress); DeltaError when the two cannot be compared."""
        base = self.base
        if base is None:
            raise DeltaError(f"model {self.name!r} has no base model to compare with")

        def compute() -> DeltaResult:
            with Tracker(self.name, "deltas", unit="B") as tracker:
                return run_deltas(
                    self.anatomy,
                    base.anatomy,
                    base_source=base.spec.source,
                    base_fingerprint=base.checkpoint.fingerprint,
                    budget=self.budget,
                    device=self.device,
                    tracker=tracker,
                )

        return self.memo(f"deltas against {base.name}", compute)

    def forward(self) -> ForwardRunner:
        """The forward cases of this model (whole below the budget, else windows)."""
        return self.memo("forward", lambda: ForwardRunner(self))

    def token_table(self) -> torch.Tensor:
        """The token table as stored (a view of the memory map: rows are read on use)."""
        entry = self.anatomy.token_embedding()
        stored = getattr(self.checkpoint, "stored", None)
        return entry.take(stored(entry.tensor)) if stored else self.anatomy.read(entry)

    def dtype_census(self) -> dict[str, int]:
        """Stored tensors per dtype (with float8's exact upcast named; a GGUF file's per
        quantization type, e.g. Q4_1, Q8_0, F32)."""
        if isinstance(self.checkpoint, GGUFCheckpoint):
            return dict(self.checkpoint.quantization_census())
        fn = getattr(self.checkpoint, "dtype_census", None)
        return dict(fn()) if fn is not None else {}

    def _gain_offset(self, stack: str, role: str) -> float:
        return gain_offset(self.anatomy.family, stack, role)

    @cached_property
    def null_plan(self) -> NullPlan:
        return plan_for(self.checkpoint.config, self.parameters)

    @cached_property
    def _null_rounding(self) -> Requantizer | None:
        ckpt = self.checkpoint
        return Requantizer.like(ckpt) if isinstance(ckpt, GGUFCheckpoint) else None

    def null_description(self) -> str:
        """How this model's nulls are made (for the report)."""
        text = self.null_plan.describe()
        rounding = self._null_rounding
        if rounding is not None and self.null_plan.full:
            text += "; " + rounding.describe()
        elif rounding is not None:
            text += "; not quantized (a large model's null is generated layer by layer)"
        return text

    @cached_property
    def _nulls(self) -> tuple[NullModel, ...]:
        dtype = _dominant_dtype(self.checkpoint)
        return tuple(
            NullModel(
                self.name,
                self.null_plan,
                seed,
                family=self.anatomy.family,
                device=self.device,
                dtype=dtype,
                budget=self.budget,
                cache_dir=self.cache_dir,
                gain_offset=self._gain_offset,
                rounding=self._null_rounding,
            )
            for seed in self.null_plan.seeds
        )

    def nulls(self) -> tuple[NullModel, ...]:
        """The random-init nulls of this model's config, one per seed (never the model
        itself: seeds 1…k, where a `synthetic:` replica is seed 0)."""
        return self._nulls

    def null(self) -> NullModel:
        """The first null seed (for measures too costly to repeat per seed)."""
        return self._nulls[0]

    def null_batteries(self) -> list[BatteryResult]:
        """The battery of every null seed, with progress."""
        nulls = self.nulls()
        with Tracker(self.name, "null batteries", total=len(nulls), unit="seeds") as tracker:
            out = []
            for null in nulls:
                out.append(null.battery())
                tracker.advance(1)
        return out


def _dominant_dtype(checkpoint: AnyCheckpoint) -> torch.dtype:
    """The float dtype most of the checkpoint's bytes are stored in (its nulls are made in
    it, so a bf16 release's null is rounded as it is); a GGUF file's is read as float32."""
    if isinstance(checkpoint, GGUFCheckpoint):
        return torch.float32
    by_dtype: dict[str, int] = {}
    for name in checkpoint.tensor_names():
        code = checkpoint.stored_dtype(name)
        by_dtype[code] = by_dtype.get(code, 0) + checkpoint.nbytes(name)
    names = {"BF16": torch.bfloat16, "F16": torch.float16, "F64": torch.float64}
    floats = {k: v for k, v in by_dtype.items() if k in (*names, "F32")}
    if not floats:
        return torch.float32
    return names.get(max(floats, key=lambda k: floats[k]), torch.float32)


def open_checkpoint(path: Path, name: str) -> AnyCheckpoint:
    """The checkpoint at a resolved source: a .gguf file (or a folder holding only one) or
    a safetensors folder."""
    return GGUFCheckpoint(path, name=name) if is_gguf(path) else Checkpoint(path, name=name)


def open_model(
    spec: ModelSpec,
    source: ResolvedSource,
    *,
    device: str,
    cache_dir: Path,
    dtype: str | None = None,
) -> LoadedModel:
    checkpoint = open_checkpoint(source.path, spec.name)
    checkpoint.validate()
    # The class a module would be built from, checked now: a name that is no transformers
    # model class fails this model's tests with one line, not each forward test its own way.
    where = f"model {spec.name!r}: {str(checkpoint.path / 'config.json')!r}"
    model_class(where, checkpoint.config, remote_code=spec.trust_remote_code)
    anatomy = build_anatomy(checkpoint, checkpoint.config, spec.family)
    # Dtype policy (terrain/checkpoint.py): every tensor with a role is a weight, so an
    # integer or boolean one refuses the model here, before any measure casts it.
    # (A GGUF file's tensors are dequantized to float32; its validate() refused the types
    # gguf cannot dequantize.)
    if isinstance(checkpoint, Checkpoint):
        stored = checkpoint.shards.tensors
        for role in anatomy.roles:
            if role.tensor in stored:
                check_float(spec.name, stored[role.tensor])
    return LoadedModel(spec, source, checkpoint, anatomy, device, cache_dir, dtype or spec.dtype)


def load_model(
    spec: ModelSpec, ctx: SourceContext, *, device: str, dtype: str | None = None
) -> LoadedModel:
    """Resolve, open and map one model; any TerrainError names the model and the fix."""
    source = resolve(spec.name, spec.source, ctx)
    return open_model(spec, source, device=device, cache_dir=ctx.cache_dir, dtype=dtype)
