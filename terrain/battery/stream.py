"""The battery's first pass: every per-tensor measure, in the checkpoint's file order.

Tensors are visited shard by shard, front to back. Each needed role's measures go to the
budgeted pool as tasks (terrain/workpool.py) that read the tensor themselves, as stored or
in float32 row chunks, so nothing converted outlives its task; q and k of one layer meet
in one QK task as soon as both are seen. Results are merged in a fixed order (stack, role,
layer), so every value is the same whatever the thread count or the timing.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from numpy.typing import NDArray

from terrain.anatomy import Anatomy, TensorRole
from terrain.battery.heads import QK_PAIRS
from terrain.battery.reader import Reader
from terrain.battery.result import BatteryResult, HeadLayout
from terrain.measures.embedding import EmbeddingGeometry, chunked_embedding_geometry
from terrain.measures.esd.traps import CorrelationTrap, correlation_trap, trap_seed
from terrain.measures.mlp import chunked_column_norms, chunked_row_norms
from terrain.measures.norms import GainStats, gain_stats, is_gain_role
from terrain.measures.position_bias import DEFAULT_MAX_DISTANCE, position_bias_profiles
from terrain.measures.qk import QKLayer, qk_layer, qk_working_bytes
from terrain.measures.sparsity import TensorCounts, count_tensor
from terrain.measures.spectra import PROJECTION_ROLES, gram_bytes, spectrum
from terrain.measures.tying import chunked_digest
from terrain.progress import Tracker
from terrain.workpool import BudgetedPool, StageClock

T = TypeVar("T")
MLP_ROLES = ("mlp_gate", "mlp_up", "mlp_down")
TABLE_ROLES = ("embed_tokens", "lm_head")
# Per-layer 2-D roles that are tables rather than maps: no spectrum.
NOT_MAPS = frozenset({"position_bias"})
THRESHOLDS = (1e-4, 1e-3, 1e-2, 1e-1)
Key = tuple[str, str]  # (stack, role)
# Correlation traps shuffle and Lanczos-solve W itself (about 4 s for a 7B MLP matrix on a
# core): matrices wider than this on both sides get them on a sample of layers only, the
# first, middle and last of their stack (TRAP_SAMPLE), stated in the result.
TRAPS_ALL_LAYERS_MAX_N = 2048
TRAP_SAMPLE = "the first, middle and last layer of the stack"


@dataclass(frozen=True)
class StreamOptions:
    """What the first pass measures (a null's pass leaves out what its analytic law gives)."""

    spectra_max_n: int | None = None  # spectra (and traps) only of min(shape) ≤ this
    traps: bool = True
    embedding: bool = True
    tying: bool = True
    gain_offset: Callable[[str, str], float] = lambda stack, role: 0.0


def needed_roles(anatomy: Anatomy) -> list[TensorRole]:
    """Weight roles some measure reads: 2-D weights and 1-D norm gains."""
    shapes = anatomy.source.tensor_shapes()
    out = []
    for r in anatomy.roles:
        if r.kind != "weight":
            continue
        ndim = len(r.shape(shapes[r.tensor]))
        if ndim == 2 or (ndim == 1 and is_gain_role(r.role)):
            out.append(r)
    return out


class Stream:
    """State of the first pass; `run` submits everything, `merge` collects in order."""

    def __init__(
        self,
        anatomy: Anatomy,
        config: Mapping[str, Any],
        reader: Reader,
        pool: BudgetedPool,
        result: BatteryResult,
        options: StreamOptions,
        tracker: Tracker | None,
    ) -> None:
        self.anatomy = anatomy
        self.config = config
        self.reader = reader
        self.pool = pool
        self.result = result
        self.options = options
        self.tracker = tracker
        self.device = torch.device(result.device)
        self.clock = StageClock(result.timings)
        self.entries = needed_roles(anatomy)
        self.shapes = anatomy.source.tensor_shapes()
        self.counts: dict[Key, list[tuple[int, Future[TensorCounts]]]] = defaultdict(list)
        self.spectra: dict[Key, list[tuple[int, Future[torch.Tensor]]]] = defaultdict(list)
        self.traps: dict[Key, list[tuple[int, Future[CorrelationTrap]]]] = defaultdict(list)
        self.qk: list[Future[QKLayer]] = []
        self.norms: dict[tuple[str, int], dict[str, Future[NDArray[np.float64]]]] = defaultdict(
            dict
        )
        self.bias: list[Future[Any]] = []
        self.digests: dict[str, Future[str]] = {}
        self.tables: list[str] = []
        self.gains: dict[Key, list[tuple[int, torch.Tensor]]] = defaultdict(list)
        self.gain_stats: list[GainStats] = []
        self.embedding: Future[EmbeddingGeometry] | None = None
        self._qk_waiting: dict[tuple[str, str, int], tuple[TensorRole, torch.Tensor]] = {}
        self.token_table = _token_table(anatomy, result, options)
        # Digests exist to compare stored tables; a lone table (most encoders) needs none.
        self.compare_tables = options.tying and sum(r.role in TABLE_ROLES for r in self.entries) > 1

    def submit(
        self, stage: str, what: str, cost: int, fn: Callable[..., T], *args: Any
    ) -> Future[T]:
        return self.pool.submit(what, cost, self.clock.timed(stage, fn), *args)

    def run(self) -> None:
        by_tensor: dict[str, list[TensorRole]] = defaultdict(list)
        for r in self.entries:
            by_tensor[r.tensor].append(r)
        for name in self.reader.order(set(by_tensor)):
            t0 = time.perf_counter()
            stored = self.reader.stored(name)
            self.reader.count(name)
            self.clock.add("read", time.perf_counter() - t0)
            for entry in by_tensor[name]:
                self._measure(entry, stored)
            del stored
            if self.tracker is not None:
                self.tracker.advance(self.reader.nbytes(name), stage="weights: per-tensor measures")

    def _measure(self, entry: TensorRole, stored: torch.Tensor) -> None:
        label = f"{entry.stack}.{entry.role}"
        key = (entry.stack, entry.role)
        layer = -1 if entry.layer is None else entry.layer
        shape = entry.shape(self.shapes[entry.tensor])
        what = f"tensor {entry.tensor!r} ({label})"
        if len(shape) == 1:
            gain = self.reader.source.tensor(entry.tensor, torch.float32)
            offset = self.options.gain_offset(entry.stack, entry.role)
            g = gain + offset if offset else gain
            self.gain_stats.append(
                gain_stats(g, stack=entry.stack, role=entry.role, layer=entry.layer)
            )
            if entry.layer is not None:
                self.gains[key].append((entry.layer, g))
            return
        chunks = self.reader.chunks(entry)
        chunk_cost = 4 * self.reader.chunk_bytes
        self.counts[key].append(
            (layer, self.submit("sparsity", what, chunk_cost, count_tensor, chunks, THRESHOLDS))
        )
        if entry.layer is not None and entry.role not in NOT_MAPS:
            limit = self.options.spectra_max_n
            if limit is None or min(shape) <= limit:
                matrix = self.reader.role(entry, stored)
                self.spectra[key].append(
                    (
                        layer,
                        self.submit(
                            "spectra", what, gram_bytes(shape), spectrum, matrix, self.device
                        ),
                    )
                )
                self._maybe_trap(entry, stored, shape, what)
            else:
                self.result.spectra_skipped[label] = (
                    f"min(shape) {min(shape)} > {limit}: the Marchenko–Pastur law is the null"
                )
        if entry.role in MLP_ROLES and entry.layer is not None:
            fn = chunked_column_norms if entry.role == "mlp_down" else chunked_row_norms
            self.norms[(entry.stack, entry.layer)][entry.role] = self.submit(
                "mlp", what, chunk_cost, lambda c=chunks, f=fn: f(c())
            )
        if entry.role == "position_bias" and entry.layer is not None:
            self.bias.append(self.submit("position bias", what, chunk_cost, self._bias, entry))
        if entry.role in TABLE_ROLES:
            self.tables.append(label)
            if self.compare_tables:
                self.digests[label] = self.submit(
                    "tying", what, chunk_cost, lambda c=chunks, s=shape: chunked_digest(s, c())
                )
        if entry == self.token_table and self.options.embedding:
            table = self.reader.role(entry, stored)

            def geometry() -> EmbeddingGeometry:
                return chunked_embedding_geometry(
                    chunks, shape, lambda rows: table[torch.from_numpy(rows)], label=label
                )

            cost = _embedding_bytes(shape, self.reader.chunk_bytes)
            self.embedding = self.submit("embedding", what, cost, geometry)
        self._maybe_qk(entry, stored)

    def _maybe_trap(
        self, entry: TensorRole, stored: torch.Tensor, shape: tuple[int, ...], what: str
    ) -> None:
        """Submit the correlation-trap test of a projection (wide ones on sampled layers)."""
        if not self.options.traps or entry.role not in PROJECTION_ROLES or entry.layer is None:
            return
        if min(shape) > TRAPS_ALL_LAYERS_MAX_N:
            last = self.anatomy.dims.layers.get(entry.stack, entry.layer + 1) - 1
            self.result.traps_sampled[f"{entry.stack}.{entry.role}"] = (
                f"min(shape) {min(shape)} > {TRAPS_ALL_LAYERS_MAX_N}: {TRAP_SAMPLE}"
            )
            if entry.layer not in (0, last // 2, last):
                return
        matrix = self.reader.role(entry, stored)
        # the float32 copy (4 bytes a value), its shuffle (4) and the permutation (int64)
        cost = 16 * int(shape[0]) * int(shape[1])
        seed = trap_seed(entry.tensor)
        self.traps[(entry.stack, entry.role)].append(
            (
                entry.layer,
                self.submit(
                    "traps", what, cost, lambda m=matrix, s=seed: correlation_trap(m, seed=s)
                ),
            )
        )

    def _bias(self, entry: TensorRole) -> Any:
        table = entry.take(self.reader.source.tensor(entry.tensor, torch.float32))
        max_distance = self.config.get("relative_attention_max_distance")
        return position_bias_profiles(
            table,
            bidirectional=entry.stack != "decoder",
            max_distance=int(max_distance or DEFAULT_MAX_DISTANCE),
            stack=entry.stack,
            layer=int(entry.layer or 0),
        )

    def _maybe_qk(self, entry: TensorRole, stored: torch.Tensor) -> None:
        """Submit a layer's QK forms once both its q and k (or xq and xk) are seen."""
        layout = self.result.heads.get(entry.stack)
        if layout is None or entry.layer is None:
            return
        for q_role, k_role, cross in QK_PAIRS:
            if entry.role not in (q_role, k_role):
                continue
            mine = (entry.stack, entry.role, entry.layer)
            other_role = k_role if entry.role == q_role else q_role
            other = self._qk_waiting.pop((entry.stack, other_role, entry.layer), None)
            if other is None:
                self._qk_waiting[mine] = (entry, stored)
                return
            pair = {entry.role: (entry, stored), other_role: other}
            (qe, qs), (ke, ks) = pair[q_role], pair[k_role]
            self.qk.append(self._submit_qk(qe, qs, ke, ks, layout, cross))
            return

    def _submit_qk(
        self,
        qe: TensorRole,
        qs: torch.Tensor,
        ke: TensorRole,
        ks: torch.Tensor,
        layout: HeadLayout,
        cross: bool,
    ) -> Future[QKLayer]:
        d_model = qe.shape(self.shapes[qe.tensor])[1]
        cost = qk_working_bytes(layout.n_heads, layout.n_kv_heads, layout.d_head, d_model)

        def solve() -> QKLayer:
            w_q = self.reader.role(qe, qs).to(self.device)
            w_k = self.reader.role(ke, ks).to(self.device)
            return qk_layer(
                w_q,
                w_k,
                n_heads=layout.n_heads,
                n_kv_heads=layout.n_kv_heads,
                d_head=layout.d_head,
                stack=qe.stack,
                layer=int(qe.layer or 0),
                cross=cross,
            )

        return self.submit("qk", f"QK forms of {qe.stack} layer {qe.layer}", cost, solve)


def _token_table(
    anatomy: Anatomy, result: BatteryResult, options: StreamOptions
) -> TensorRole | None:
    from terrain.errors import AnatomyError

    if not options.embedding:
        result.embedding_skipped = "not measured on this null: analytic law (1/(1+D/N), mean 0)"
    try:
        return anatomy.token_embedding()
    except AnatomyError:
        result.embedding_skipped = "no token-embedding table (a vision model)"
        return None


def _embedding_bytes(shape: tuple[int, ...], chunk_bytes: int) -> int:
    """The embedding geometry's working set: the float64 covariance (and its eigensolver
    copy), a float32 chunk with its centred copy, and the sampled rows' Gram."""
    d = shape[1]
    return 2 * 8 * d * d + 2 * chunk_bytes + 8 * 4000 * (d + min(d, 4000))
