"""The delta pass: a model and its base, one tensor pair in memory at a time.

Both checkpoints stay open side by side (safetensors memory maps, or any tensor source
the battery reads). The model's tensors are visited in its file order, shard by shard; each
role's base tensor is read beside it, and the pair goes to the budgeted task pool
(terrain/workpool.py) as one task that converts both a block at a time
(terrain.measures.delta). A task's working set is counted before it starts, so memory is
set by `budget` and the largest tensor, never by the model; results are kept as a few
numbers per tensor.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from concurrent.futures import Future

import torch

from terrain.anatomy import Anatomy
from terrain.battery.reader import Reader
from terrain.delta.pairing import Pair, comparable
from terrain.delta.result import DeltaResult, TensorChange
from terrain.errors import CheckpointError
from terrain.measures.delta import TensorDelta, pair_delta, pair_delta_bytes
from terrain.measures.kernels import BLOCK_BYTES
from terrain.memory import trim_heap
from terrain.progress import Tracker
from terrain.workpool import BudgetedPool, MemoryBudget, task_pool

STAGE = "delta"  # the readers' name of this pass's reads


def run_deltas(
    model: Anatomy,
    base: Anatomy,
    *,
    base_source: str,
    base_fingerprint: str,
    budget: MemoryBudget,
    device: str = "cpu",
    tracker: Tracker | None = None,
    block_bytes: int = BLOCK_BYTES,
) -> DeltaResult:
    """Every shared role of `model` against `base`, within `budget` (DeltaError when the
    two cannot be compared); `tracker` receives the stored bytes done."""
    start = time.perf_counter()
    pairing = comparable(model, base)
    result = DeltaResult(model.model_name, base.model_name, base_source, base_fingerprint, pairing)
    mine, theirs = Reader(model.source), Reader(base.source)
    block = max(1 << 20, min(block_bytes, budget.bytes // 16))
    by_tensor: dict[str, list[Pair]] = defaultdict(list)
    for pair in pairing.pairs:
        by_tensor[pair.entry.tensor].append(pair)
    if tracker is not None:
        tracker.total = sum(mine.nbytes(t) for t in by_tensor) + sum(
            theirs.nbytes(t) for t in {p.base.tensor for p in pairing.pairs}
        )
    tasks: list[tuple[Pair, Future[TensorDelta]]] = []

    def measure(pair: Pair, stored: torch.Tensor, base_stored: torch.Tensor) -> TensorDelta:
        w, w0 = mine.role(pair.entry, stored), theirs.role(pair.base, base_stored)
        return pair_delta(w, w0, spectra=pair.is_map, device=device, block_bytes=block)

    with task_pool(device) as executor:
        pool = BudgetedPool(executor, budget)
        for name in mine.order(set(by_tensor)):
            stored = mine.stored(name)
            mine.count(name, STAGE)
            done = mine.nbytes(name)
            bases: dict[str, torch.Tensor] = {}  # a fused tensor's roles share one base read
            for pair in by_tensor[name]:
                other = pair.base.tensor
                if other not in bases:
                    bases[other] = theirs.stored(other)
                    theirs.count(other, STAGE)
                    done += theirs.nbytes(other)
                cost = pair_delta_bytes(pair.shape, spectra=pair.is_map, block_bytes=block)
                what = f"delta of tensor {name!r} ({pair.entry.stack}.{pair.entry.role})"
                task = pool.submit(what, cost, measure, pair, stored, bases[other])
                tasks.append((pair, task))
            del stored, bases
            if tracker is not None:
                tracker.advance(done, stage="deltas against the base model")
        for pair, future in tasks:
            delta = future.result()
            _check_finite(model, base, pair, delta)
            result.changes.append(TensorChange.of(pair, delta.norms, delta.spectrum))
        result.peak_working_bytes = pool.peak
    trim_heap()
    result.bytes_read = mine.bytes_read + theirs.bytes_read
    result.reads = dict(mine.reads.get(STAGE, {}))
    result.base_reads = dict(theirs.reads.get(STAGE, {}))
    result.seconds = time.perf_counter() - start
    return result


def _check_finite(model: Anatomy, base: Anatomy, pair: Pair, delta: TensorDelta) -> None:
    """NaN or Inf in either tensor is that checkpoint's failure, named with the tensor."""
    for anatomy, tensor, norm in (
        (model, pair.entry.tensor, delta.norms.norm),
        (base, pair.base.tensor, delta.norms.base_norm),
    ):
        if not math.isfinite(norm):
            raise CheckpointError(
                f"model {anatomy.model_name!r}: tensor {tensor!r} holds NaN or Inf values"
            )
