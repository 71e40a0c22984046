"""A model's forward cases: the module(s) a forward property runs, with their inputs.

Below `WHOLE_MODEL_PARAMETERS` a property runs the whole model, in float64, once. Above it,
it runs each window of the sample (terrain/forward/window.py) in turn, one module in
memory at a time, in float64 where the window and one transformed copy of it fit the
forward budget (`FORWARD_BUDGET`), else in float32 (the precision the symmetry tolerances
allow for float32; the finding says which and why). Inputs are `forward_inputs` of the
model's own config (seeded, the same for every window), their token ids renumbered into
the window's token rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from terrain.errors import TerrainError
from terrain.family import Absent, get_family
from terrain.forward.window import (
    WHOLE_MODEL_PARAMETERS,
    NotWindowableError,
    Window,
    WindowPlan,
    open_window,
    remap_ids,
    sample_layers,
    window_tokens,
)
from terrain.memory import trim_heap
from terrain.progress import Tracker
from terrain.property import NotApplicableError
from terrain.tracing import forward_inputs

if TYPE_CHECKING:
    from terrain.model import LoadedModel

# Every model run whole (up to WHOLE_MODEL_PARAMETERS) fits in float64 with one
# transformed copy (8 bytes × 2 per parameter: 2.4 GB); windows of larger models share it.
FORWARD_BUDGET = 16 * WHOLE_MODEL_PARAMETERS
SEQ_LEN = 8
INPUT_SEED = 0


@dataclass(frozen=True)
class ForwardCase:
    """One module to run: the whole model or one window, its dtype and its inputs."""

    plan: WindowPlan
    window: Window | None  # None: the whole model
    dtype: torch.dtype
    dtype_reason: str  # why this dtype (the budget rule, stated)
    inputs: dict[str, Any]

    @property
    def label(self) -> str:
        return self.plan.describe()


class ForwardRunner:
    """The forward cases of one model, built lazily, at most one module held at a time."""

    def __init__(self, model: LoadedModel, budget: int = FORWARD_BUDGET) -> None:
        self.model = model
        self.budget = budget
        self._held: tuple[tuple[str, torch.dtype], Any] | None = None

    @property
    def whole(self) -> bool:
        return self.model.parameters <= WHOLE_MODEL_PARAMETERS

    def plans(self, *, pairs: bool = False) -> list[WindowPlan]:
        """Whole model below the budget; else one plan per sampled block (per pair of
        consecutive blocks when `pairs`)."""
        if self.whole:
            return [WindowPlan({}, None, whole=True)]
        config = self.model.checkpoint.config
        try:
            sample = sample_layers(self.model.anatomy, config)
        except NotWindowableError as e:
            raise TerrainError(f"model {self.model.name!r}: {e}") from None
        tokens = window_tokens(self._raw_ids(), config)
        count = max(len(v) for v in sample.values())
        plans = []
        for k in range(count):
            layers: dict[str, tuple[int, ...]] = {}
            for stack, chosen in sample.items():
                i = chosen[min(k, len(chosen) - 1)]
                n = self.model.anatomy.dims.layers[stack]
                if pairs:
                    i = min(i, n - 2)
                    layers[stack] = (i, i + 1) if n >= 2 else (i,)
                else:
                    layers[stack] = (i,)
            plan = WindowPlan(layers, tokens)
            if plan not in plans:
                plans.append(plan)
        return plans

    def _raw_ids(self) -> list[int]:
        inputs = forward_inputs(self.model.checkpoint.config, seq_len=SEQ_LEN, seed=INPUT_SEED)
        ids: list[int] = []
        for key in ("input_ids", "decoder_input_ids"):
            value = inputs.get(key)
            if isinstance(value, torch.Tensor):
                ids += [int(x) for x in value.reshape(-1)]
        return ids

    def dtype_for(self, parameters: int, preferred: torch.dtype) -> tuple[torch.dtype, str]:
        """float64 when the module and one transformed copy fit the budget, else float32."""
        if preferred != torch.float64:
            return preferred, f"{preferred} requested"
        need = 2 * 8 * parameters
        if need <= self.budget:
            return torch.float64, "float64: the module and one transformed copy fit the budget"
        return torch.float32, (
            f"float32: a float64 module of {parameters:,} parameters and one transformed copy "
            f"({need / (1 << 30):.2f} GiB) exceed the forward budget of "
            f"{self.budget / (1 << 30):.2f} GiB"
        )

    def cases(
        self, *, pairs: bool = False, dtype: torch.dtype = torch.float64
    ) -> Iterator[ForwardCase]:
        """Every case in turn (a window is written to the cache the first time)."""
        model = self.model
        why = no_module(model.anatomy.family)
        if why is not None:
            raise NotApplicableError(f"model {model.name!r}: {why}")
        plans = self.plans(pairs=pairs)
        with Tracker(model.name, "forward windows", total=len(plans), unit="windows") as tracker:
            for plan in plans:
                if plan.whole:
                    chosen, why = self.dtype_for(model.parameters, dtype)
                    yield ForwardCase(plan, None, chosen, why, _seeded_inputs(model, chosen))
                else:
                    window = open_window(
                        model.anatomy,
                        model.checkpoint.config,
                        plan,
                        model.cache_dir / "windows",
                        model.checkpoint.fingerprint,
                        model.name,
                    )
                    n = sum(math.prod(s) for s in window.checkpoint.tensor_shapes().values())
                    chosen, why = self.dtype_for(n, dtype)
                    raw = _seeded_inputs(model, chosen)
                    inputs = remap_ids(raw, plan.tokens) if plan.tokens else raw
                    yield ForwardCase(plan, window, chosen, why, inputs)
                tracker.advance(1)

    def module(self, case: ForwardCase) -> Any:
        """The case's module in its dtype (the one held before is released)."""
        dtype_name = str(case.dtype).removeprefix("torch.")
        if case.window is None:
            return self.model.module(dtype_name)
        key = (case.plan.key(), case.dtype)
        if self._held is not None and self._held[0] == key:
            return self._held[1]
        self._drop()
        from terrain.modules import build_module

        module = build_module(
            case.window.checkpoint,
            dtype=dtype_name,
            device=self.model.device,
            trust_remote_code=self.model.spec.trust_remote_code,
        )
        self._held = (key, module)
        return module

    def anatomy(self, case: ForwardCase) -> Any:
        return self.model.anatomy if case.window is None else case.window.anatomy

    def config(self, case: ForwardCase) -> Any:
        return self.model.checkpoint.config if case.window is None else case.window.config

    def release(self) -> None:
        """Drop the held module and give its memory back before the next property."""
        self._drop()
        trim_heap()

    def _drop(self) -> None:
        """Free the held window module's storage, whoever still refers to it: a caller's
        loop variable must not keep one window alive while the next is built."""
        if self._held is not None:
            self._held[1].to("meta")
            self._held = None


def no_module(family: str) -> str | None:
    """Why a family has no module for a forward property to run (None: transformers builds
    one), from its declaration (`Family.module`)."""
    if isinstance(get_family(family).module, Absent):
        return f"the {family} layout has no transformers module to run"
    return None


def _seeded_inputs(model: LoadedModel, dtype: torch.dtype) -> dict[str, Any]:
    """The forward properties' seeded inputs for the model's config, on its device."""
    return forward_inputs(
        model.checkpoint.config, seq_len=SEQ_LEN, seed=INPUT_SEED, device=model.device, dtype=dtype
    )
