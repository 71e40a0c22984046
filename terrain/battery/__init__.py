"""The weights-only battery: every weight measure in two streaming passes over a checkpoint.

Pass 1 (terrain/battery/stream.py) visits the needed tensors in file order, shard by shard,
each once (front to back), and hands each role's measures to a budgeted task pool: sparsity at four
thresholds with its scale-free companions, the spectrum of every per-layer matrix, both
QK forms of every attention layer, dead-unit norms, norm gains, T5 position-bias profiles,
table digests for the tying check and the token-embedding geometry. Pass 2
(terrain/battery/crosslayer.py) accumulates the layer × layer cosine of every per-layer
role over row chunks of all its layers: it reads those tensors a second time (a chunk of
every layer at once, from the page cache when it still holds them), because an exact
layer × layer cosine needs every pair of layers and holding every layer of a role would
make memory grow with the model. Memory is set by the budget (`MemoryBudget`,
default `DEFAULT_BUDGET`), never by the model: tensors stay in the memory map in their
stored dtype, measures convert them a chunk at a time, and each task's working set is
counted before it starts. It works on canonical roles only, so a new family adapter
joins without changes here.

Measured (every value beside its null, in the properties):
- sparsity of every 2-D weight role at |w| < 1e-4, 1e-3, 1e-2, 1e-1, and the scale-free
  companion (measures/sparsity.py);
- spectra of every per-layer 2-D weight (measures/spectra.py);
- correlation traps of every projection: λ_max of a seeded entry-shuffled copy against its
  Marchenko–Pastur edge (measures/esd/traps.py; matrices wider than 2048 on sampled layers);
- both QK forms of every attention layer, self and cross (measures/qk.py);
- dead MLP units (measures/mlp.py);
- norm gain statistics and γ-directions (measures/norms.py);
- T5 relative position bias profiles (measures/position_bias.py);
- weight tying of token tables and LM head (measures/tying.py);
- token-embedding geometry (measures/embedding.py);
- cross-layer cosine of every per-layer role (measures/crosslayer.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch

from terrain.anatomy import Anatomy
from terrain.battery.crosslayer import run_crosslayer
from terrain.battery.heads import QK_PAIRS, head_layouts
from terrain.battery.reader import CHUNK_BYTES, Reader
from terrain.battery.result import BatteryResult, HeadLayout
from terrain.battery.stream import (
    MLP_ROLES,
    THRESHOLDS,
    Stream,
    StreamOptions,
    needed_roles,
)
from terrain.measures.esd.traps import RoleTraps
from terrain.measures.mlp import dead_neurons
from terrain.measures.norms import gain_directions
from terrain.measures.sparsity import merge
from terrain.measures.spectra import role_spectra
from terrain.measures.tying import tying_report
from terrain.memory import trim_heap
from terrain.progress import Tracker
from terrain.workpool import BudgetedPool, MemoryBudget, StageClock, task_pool

__all__ = [
    "DEFAULT_BUDGET",
    "MLP_ROLES",
    "QK_PAIRS",
    "THRESHOLDS",
    "BatteryResult",
    "HeadLayout",
    "StreamOptions",
    "run_battery",
]

# Working memory of a pass beyond the memory-mapped tensors: two 4096-wide spectra, or a
# spectrum beside a 4096-wide QK form, run side by side within it.
DEFAULT_BUDGET = MemoryBudget(3 << 29)  # 1.5 GiB


def run_battery(
    anatomy: Anatomy,
    *,
    config: Mapping[str, Any] | None = None,
    device: str = "cpu",
    budget: MemoryBudget = DEFAULT_BUDGET,
    options: StreamOptions | None = None,
    tracker: Tracker | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> BatteryResult:
    """Every weights-only measure of one checkpoint, within `budget`.

    `config` is the checkpoint's config.json (head layout of two-tower models, T5's
    max_distance, the tying declaration); `device` where the measures run; `tracker`
    receives the stored bytes done.
    """
    start = time.perf_counter()
    cfg: Mapping[str, Any] = config if config is not None else {}
    opts = options or StreamOptions()
    result = BatteryResult(anatomy.model_name, anatomy.family, device)
    result.heads, result.qk_skipped = head_layouts(anatomy, cfg)
    reader = Reader(anatomy.source, chunk_bytes=min(chunk_bytes, budget.bytes // 8))
    if tracker is not None:
        tracker.total = planned_bytes(anatomy, reader)
    with task_pool(device) as executor:
        pool = BudgetedPool(executor, budget)
        stream = Stream(anatomy, cfg, reader, pool, result, opts, tracker)
        stream.run()
        _merge(stream, result)
        trim_heap()
        result.crosslayer = run_crosslayer(
            reader, stream.entries, pool, StageClock(result.timings), tracker
        )
    trim_heap()
    result.reads = dict(reader.reads.get("weights", {}))
    result.crosslayer_reads = dict(reader.reads.get("crosslayer", {}))
    result.bytes_read = reader.bytes_read
    result.peak_working_bytes = pool.peak
    result.seconds = time.perf_counter() - start
    return result


def planned_bytes(anatomy: Anatomy, reader: Reader) -> int:
    """Stored bytes both passes read: every needed tensor once, every per-layer role's
    tensors again for the cross-layer cosines."""
    from terrain.battery.crosslayer import crosslayer_roles

    entries = needed_roles(anatomy)
    first = sum(reader.nbytes(n) for n in {r.tensor for r in entries})
    groups = crosslayer_roles(entries, dict(anatomy.source.tensor_shapes()))
    second = sum(reader.nbytes(r.tensor) for group in groups.values() for r in group)
    return first + second


def _merge(stream: Stream, result: BatteryResult) -> None:
    """Collect every task's result in (stack, role, layer) order."""
    for (stack, role), counts in sorted(stream.counts.items()):
        ordered = [f.result() for _, f in sorted(counts, key=lambda x: x[0])]
        result.sparsity[f"{stack}.{role}"] = merge(f"{stack}.{role}", ordered)
        result.sparsity_counts[f"{stack}.{role}"] = ordered
    shapes = stream.shapes
    for (stack, role), spectra in sorted(stream.spectra.items()):
        ordered_spectra = sorted(spectra, key=lambda x: x[0])
        squared = torch.stack([f.result() for _, f in ordered_spectra])
        entry = next(r for r in stream.entries if (r.stack, r.role) == (stack, role))
        out_in = entry.shape(shapes[entry.tensor])
        layers = [layer for layer, _ in ordered_spectra]
        result.spectra[f"{stack}.{role}"] = role_spectra(
            stack, role, layers, squared, (int(out_in[0]), int(out_in[1]))
        )
    for (stack, role), traps in sorted(stream.traps.items()):
        ordered_traps = sorted(traps, key=lambda x: x[0])
        result.traps[f"{stack}.{role}"] = RoleTraps(
            stack,
            role,
            tuple(layer for layer, _ in ordered_traps),
            tuple(f.result() for _, f in ordered_traps),
        )
    result.qk = sorted((f.result() for f in stream.qk), key=lambda x: (x.stack, x.cross, x.layer))
    for (stack, layer), norms in sorted(stream.norms.items()):
        got = {role: f.result() for role, f in norms.items()}
        if "mlp_up" in got and "mlp_down" in got:
            result.mlp.append(
                dead_neurons(
                    got["mlp_up"], got["mlp_down"], got.get("mlp_gate"), stack=stack, layer=layer
                )
            )
    result.position_bias = sorted(
        (f.result() for f in stream.bias), key=lambda x: (x.stack, x.layer)
    )
    result.gains = sorted(
        stream.gain_stats, key=lambda g: (g.stack, g.role, -1 if g.layer is None else g.layer)
    )
    for (stack, role), gains in sorted(stream.gains.items()):
        if len(gains) >= 2:
            ordered_gains = sorted(gains, key=lambda x: x[0])
            result.gain_directions[f"{stack}.{role}"] = gain_directions(
                [g for _, g in ordered_gains],
                stack=stack,
                role=role,
                layers=[layer for layer, _ in ordered_gains],
            )
    if stream.embedding is not None:
        result.embedding = stream.embedding.result()
    if stream.options.tying:
        digests = {label: f.result() for label, f in stream.digests.items()}
        table = stream.token_table
        reference = f"{table.stack}.{table.role}" if table is not None else None
        tables = [k for k in stream.tables if k.endswith(".embed_tokens")]
        heads = [k for k in stream.tables if k.endswith(".lm_head")]
        result.tying = tying_report(
            digests,
            reference=reference,
            stack_copies=[k for k in tables if k != reference],
            lm_head=heads[0] if heads else None,
            config=stream.config,
        )


__all__ += ["needed_roles"]
