"""The battery's second pass: the layer × layer cosine of every per-layer 2-D role.

A cosine of two layers needs both at once, and holding every layer of a role would make
memory grow with the model (a 7B model's MLP role is 5.8 GB of float32). So each role's
Gram is accumulated over row chunks read from every layer's memory map: chunk c of layer
0, chunk c of layer 1, ... (measures/crosslayer.CosineGram), each chunk a share of the
budget. A fused role (a slice of GPT-2's c_attn, open_clip's in_proj) is taken out whole;
fused tensors belong to small models.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import Future

import torch

from terrain.anatomy import TensorRole
from terrain.battery.reader import Reader
from terrain.measures.crosslayer import COSINE_CHUNK, CosineGram, RoleCorrelation
from terrain.progress import Tracker
from terrain.workpool import BudgetedPool, StageClock


def crosslayer_roles(
    entries: list[TensorRole], shapes: dict[str, tuple[int, ...]] | None = None
) -> dict[tuple[str, str], list[TensorRole]]:
    """(stack, role) -> its layers' entries (layer order), for 2-D roles present in two or
    more layers with one shape."""
    groups: dict[tuple[str, str], list[TensorRole]] = defaultdict(list)
    for r in entries:
        if r.layer is not None:
            groups[(r.stack, r.role)].append(r)
    out = {}
    for key, group in sorted(groups.items()):
        group.sort(key=lambda r: int(r.layer or 0))
        if shapes is not None:
            dims = {r.shape(shapes[r.tensor]) for r in group}
            if len(dims) != 1 or len(next(iter(dims))) != 2:
                continue
        if len(group) >= 2:
            out[key] = group
    return out


def _read_chunk(
    reader: Reader, group: list[TensorRole], rows: tuple[int, int] | None
) -> list[torch.Tensor]:
    """Rows [start, stop) of every layer of one role (all of a fused role's values)."""
    if rows is None:
        return [r.take(reader.source.tensor(r.tensor, torch.float32)) for r in group]
    start, stop = rows
    return [reader.source.rows(r.tensor, start, stop, torch.float32) for r in group]  # type: ignore[attr-defined]


def _chunks(
    group: list[TensorRole], shape: tuple[int, ...], rows: int
) -> list[tuple[int, int] | None]:
    """The row ranges a role is read in (None: whole, for fused roles and small ones)."""
    if any(r.is_view for r in group) or rows >= shape[0]:
        return [None]
    return [(start, min(shape[0], start + rows)) for start in range(0, shape[0], rows)]


def run_crosslayer(
    reader: Reader,
    entries: list[TensorRole],
    pool: BudgetedPool,
    clock: StageClock,
    tracker: Tracker | None,
) -> dict[str, RoleCorrelation]:
    """Every role's cosine matrix; one pool task per role, chunks within the budget."""
    shapes = dict(reader.source.tensor_shapes())
    groups = crosslayer_roles(entries, shapes)
    share = max(1 << 20, pool.budget.bytes // 2)
    futures: dict[str, Future[RoleCorrelation]] = {}
    for (stack, role), group in groups.items():
        shape = group[0].shape(shapes[group[0].tensor])
        row_values = shape[1]
        rows = max(1, share // (4 * row_values * len(group)))
        # the chunk of every layer in float32, and CosineGram's stacked step
        cost = 4 * row_values * len(group) * min(rows, shape[0]) + 8 * COSINE_CHUNK * len(group)
        stored = sum(reader.nbytes(r.tensor) for r in group)

        def task(
            group: list[TensorRole] = group,
            shape: tuple[int, ...] = shape,
            rows: int = rows,
            stored: int = stored,
        ) -> RoleCorrelation:
            acc = CosineGram(len(group))
            for span in _chunks(group, shape, rows):
                # read, add, release: one chunk of every layer in memory at a time
                pieces = _read_chunk(reader, group, span)
                acc.add(pieces)
                del pieces
                if tracker is not None:
                    share = 1.0 if span is None else (span[1] - span[0]) / shape[0]
                    tracker.advance(stored * share, stage="weights: cross-layer cosines")
            for r in group:
                reader.count(r.tensor, "crosslayer")
            return RoleCorrelation(group[0].stack, group[0].role, acc.cosines(), acc.values)

        label = f"{stack}.{role}"
        futures[label] = pool.submit(
            f"cross-layer cosines of {label}", cost, clock.timed("crosslayer", task)
        )
    return {label: f.result() for label, f in futures.items()}
