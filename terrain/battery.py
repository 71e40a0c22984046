"""The weights-only battery: every weight measure in one streaming pass over the checkpoint.

`run_battery` reads each needed tensor exactly once (a fused tensor such as GPT-2's c_attn
once for all the roles it holds), runs every measure that needs it while it is in memory
and releases it. It works on canonical roles only, so a new family adapter joins without
changes here.

The pass goes unit by unit. A unit is a set of (stack, role) pairs that must be in memory
together: roles that share a stored tensor, and q with k (xq with xk) for the QK forms.
Within a unit, tensors are read layer by layer and kept as per-role stacks until the
unit's measures are done (the cross-layer cosine needs every layer of a role); then they
are released. The work goes to a task pool (terrain/workpool.py): on the CPU with
several threads, each matrix's spectrum (float64 Gram, then eigvalsh) is a task as soon
as the matrix is read, then each layer's QK forms, each role's other measures and the
embedding geometry; results are merged in submission order, so every value equals the
one-thread pass. The next units are read while the pool works, as long as the units in
flight hold at most _AHEAD_BYTES (one unit at a time beyond that, however large). With
one thread, or on an accelerator (where Grams are solved in stacked batches), tasks run
as they are submitted.

Measured (every value beside its null, in the properties):
- sparsity of every 2-D weight role at |w| < 1e-4, 1e-3, 1e-2, 1e-1, and the scale-free
  companion (measures/sparsity.py);
- spectra of every per-layer 2-D weight (measures/spectra.py);
- both QK forms of every attention layer, self and cross (measures/qk.py);
- dead MLP units (measures/mlp.py);
- norm gain statistics and γ-directions (measures/norms.py);
- T5 relative position bias profiles (measures/position_bias.py);
- weight tying of token tables and LM head (measures/tying.py);
- token-embedding geometry (measures/embedding.py);
- cross-layer cosine of every per-layer role (measures/crosslayer.py).
"""

from __future__ import annotations

import ctypes
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray

from terrain.anatomy import Anatomy, TensorRole
from terrain.errors import AnatomyError
from terrain.measures.crosslayer import RoleCorrelation
from terrain.measures.embedding import EmbeddingGeometry, embedding_geometry
from terrain.measures.kernels import gram
from terrain.measures.mlp import MLPLayer, column_norms, dead_neurons, row_norms
from terrain.measures.norms import (
    GainDirections,
    GainStats,
    gain_directions,
    gain_offset,
    gain_stats,
    is_gain_role,
)
from terrain.measures.position_bias import (
    DEFAULT_MAX_DISTANCE,
    PositionBiasTable,
    position_bias_profiles,
)
from terrain.measures.qk import QKLayer, qk_layer
from terrain.measures.sparsity import RoleSparsity, role_sparsity
from terrain.measures.spectra import (
    RoleSpectra,
    role_spectra,
    smaller_gram,
    squared_singular_values,
)
from terrain.measures.tying import TyingReport, tensor_digest, tying_report
from terrain.workpool import StageClock, task_pool

if TYPE_CHECKING:
    from terrain.model import LoadedModel

try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None)
except OSError:  # pragma: no cover - a platform without a C library handle
    _LIBC = None

MEMO_KEY = "battery"
THRESHOLDS = (1e-4, 1e-3, 1e-2, 1e-1)
QK_PAIRS = (("q", "k", False), ("xq", "xk", True))
MLP_ROLES = ("mlp_gate", "mlp_up", "mlp_down")
_TABLE_ROLES = ("embed_tokens", "lm_head")
# Per-layer 2-D roles that are tables rather than maps: no spectrum.
_NOT_MAPS = frozenset({"position_bias"})
# Bytes of pending float64 Grams before an eigvalsh batch on an accelerator, where batches
# pay off. On the CPU each matrix is a pool task of its own (Gram, then eigensolver):
# LAPACK takes a batch one matrix at a time anyway, so only the tasks in flight hold one.
_GRAM_BUDGET = 1 << 30
# Tensors the units read ahead may hold while the pool catches up (the unit being read
# always proceeds, however large).
_AHEAD_BYTES = 256 << 20
_COSINE_CHUNK = 1 << 18  # values per layer per chunk of the cross-layer Gram
_COSINE_BLOCK = 1 << 10  # values per float32 partial product (see layer_cosines)
# open_clip's defaults when its tower config omits them (as terrain/anatomy/open_clip.py).
_OPEN_CLIP_HEAD_WIDTH = 64
_OPEN_CLIP_TEXT_HEADS = 8


@dataclass(frozen=True)
class HeadLayout:
    n_heads: int
    n_kv_heads: int
    d_head: int
    source: str  # where the numbers come from


@dataclass
class BatteryResult:
    """Everything the battery measured on one checkpoint (held per worker via model.memo)."""

    model: str
    family: str
    device: str
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    reads: dict[str, int] = field(default_factory=dict)  # tensor name -> times read
    bytes_read: int = 0
    sparsity: dict[str, RoleSparsity] = field(default_factory=dict)  # "stack.role"
    spectra: dict[str, RoleSpectra] = field(default_factory=dict)
    qk: list[QKLayer] = field(default_factory=list)
    qk_skipped: dict[str, str] = field(default_factory=dict)  # stack -> reason
    mlp: list[MLPLayer] = field(default_factory=list)
    gains: list[GainStats] = field(default_factory=list)
    gain_directions: dict[str, GainDirections] = field(default_factory=dict)
    position_bias: list[PositionBiasTable] = field(default_factory=list)
    tying: TyingReport | None = None
    embedding: EmbeddingGeometry | None = None
    embedding_skipped: str | None = None
    crosslayer: dict[str, RoleCorrelation] = field(default_factory=dict)
    heads: dict[str, HeadLayout] = field(default_factory=dict)


def battery_of(model: LoadedModel) -> BatteryResult:
    """The model's battery, computed once per worker (`model.memo`)."""
    return model.memo(
        MEMO_KEY,
        lambda: run_battery(model.anatomy, config=model.checkpoint.config, device=model.device),
    )


def null_battery_of(model: LoadedModel) -> BatteryResult:
    """The battery of the model's random-init replica (itself when already random)."""
    return battery_of(model.null())


def layer_cosines(tensors: list[torch.Tensor]) -> NDArray[np.float64]:
    """crosslayer.cosine_matrix's layer × layer cosine, its Gram accumulated over chunks of
    the flattened tensors (cosine_matrix converts every layer to float64 at once: 1.6 GB
    for BERT-large's MLP, 5.6 GB for Qwen3-4B's; here L × 1 MiB at a time).

    Each chunk's products are float32 sums over blocks of _COSINE_BLOCK values, added up in
    float64: a block's rounding is at most _COSINE_BLOCK·ε₃₂ ≈ 6e-5 of ‖a‖‖b‖ and about
    √_COSINE_BLOCK·ε₃₂ ≈ 2e-6 in practice (5e-10 on the cosines of BERT-large-shape MLP
    weights against a float64 product), far below the null's 1/√n. Twice as fast as
    converting to float64, which moves three times the bytes.
    """
    if len(tensors) < 2:
        raise ValueError(f"need at least two tensors to correlate, got {len(tensors)}")
    if len({tuple(t.shape) for t in tensors}) != 1:
        raise ValueError("tensors of one role must share a shape")
    flat = [t.reshape(-1).float() for t in tensors]
    size, layers = flat[0].numel(), len(flat)
    total = torch.zeros(layers, layers, dtype=torch.float64, device=flat[0].device)
    for start in range(0, size, _COSINE_CHUNK):
        x = torch.stack([f[start : start + _COSINE_CHUNK] for f in flat])
        blocks = x.shape[1] // _COSINE_BLOCK
        if blocks:
            xb = x[:, : blocks * _COSINE_BLOCK].reshape(layers, blocks, -1).transpose(0, 1)
            total += torch.bmm(xb, xb.transpose(1, 2)).sum(dim=0, dtype=torch.float64)
        if x.shape[1] > blocks * _COSINE_BLOCK:
            total += gram(x[:, blocks * _COSINE_BLOCK :], outer=True, dtype=torch.float64)
    norms = total.diagonal().sqrt()
    return (total / torch.outer(norms, norms).clamp_min(1e-300)).cpu().numpy()


def _trim_heap() -> None:
    """Give freed heap memory back to the system after a unit (glibc's malloc_trim).

    A unit frees its per-role stacks at once, but glibc serves tensors of a few MiB from
    its heap once its adaptive mmap threshold has grown, and keeps that memory: without
    a trim the process holds the largest units' stacks long after they are gone.
    """
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)


def _needed(anatomy: Anatomy, shapes: Mapping[str, tuple[int, ...]]) -> list[TensorRole]:
    """Weight roles some measure reads: 2-D weights and 1-D norm gains."""
    out = []
    for r in anatomy.roles:
        if r.kind != "weight":
            continue
        ndim = len(r.shape(shapes[r.tensor]))
        if ndim == 2 or (ndim == 1 and is_gain_role(r.role)):
            out.append(r)
    return out


def _units(entries: list[TensorRole]) -> list[list[tuple[str, str]]]:
    """Group (stack, role) keys that share a stored tensor, or must meet (q with k)."""
    keys = sorted({(r.stack, r.role) for r in entries})
    parent = {k: k for k in keys}

    def find(k: tuple[str, str]) -> tuple[str, str]:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    def union(a: tuple[str, str], b: tuple[str, str]) -> None:
        if a in parent and b in parent:
            parent[find(a)] = find(b)

    by_tensor: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for r in entries:
        by_tensor[r.tensor].append((r.stack, r.role))
    for group in by_tensor.values():
        for k in group[1:]:
            union(group[0], k)
    for stack in {k[0] for k in keys}:
        for q_role, k_role, _ in QK_PAIRS:
            union((stack, q_role), (stack, k_role))
    units: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for k in keys:
        units[find(k)].append(k)
    return sorted(units.values())


def _tower_heads(config: Mapping[str, Any], stack: str) -> tuple[int, int, int, str] | None:
    """Heads of a two-tower model's stack from its tower config (HF or open_clip)."""
    hf = config.get(f"{stack}_config")
    if isinstance(hf, Mapping):
        heads = hf.get("num_attention_heads") or hf.get("num_heads")
        hidden = hf.get("hidden_size")
        if isinstance(heads, int) and isinstance(hidden, int) and heads > 0:
            d_head = hf.get("head_dim") or hidden // heads
            kv = hf.get("num_key_value_heads") or heads
            return heads, int(kv), int(d_head), f"config.json {stack}_config"
    oc = config.get(f"{stack}_cfg")
    if isinstance(oc, Mapping) and isinstance(oc.get("width"), int):
        width = int(oc["width"])
        if stack == "vision":
            heads = max(1, width // int(oc.get("head_width") or _OPEN_CLIP_HEAD_WIDTH))
        else:
            heads = int(oc.get("heads") or _OPEN_CLIP_TEXT_HEADS)
        return heads, heads, width // heads, f"config.json {stack}_cfg"
    return None


def head_layouts(
    anatomy: Anatomy, config: Mapping[str, Any]
) -> tuple[dict[str, HeadLayout], dict[str, str]]:
    """Heads per stack with attention, checked against the q/k shapes; else a reason."""
    shapes = anatomy.source.tensor_shapes()
    found: dict[str, HeadLayout] = {}
    skipped: dict[str, str] = {}
    dims = anatomy.dims
    for stack in anatomy.stacks():
        for q_role, k_role, _ in QK_PAIRS:
            qs, ks = anatomy.layers(stack, q_role), anatomy.layers(stack, k_role)
            if not qs or not ks or stack in found:
                continue
            q_rows = qs[0].shape(shapes[qs[0].tensor])[0]
            k_rows = ks[0].shape(shapes[ks[0].tensor])[0]
            tower = _tower_heads(config, stack)
            if tower is None:
                tower = (dims.n_heads, dims.n_kv_heads, dims.d_head, "the anatomy's dimensions")
            n_h, n_kv, d_h, source = tower
            if q_rows == n_h * d_h and k_rows == n_kv * d_h and n_h % n_kv == 0:
                found[stack] = HeadLayout(n_h, n_kv, d_h, source)
            else:
                skipped[stack] = (
                    f"heads of stack {stack!r} unknown: W_Q has {q_rows} rows and W_K {k_rows}, "
                    f"{source} gives {n_h} query / {n_kv} key heads of {d_h}"
                )
    return found, skipped


@dataclass
class _SubmittedUnit:
    """A unit whose tensors are read and whose tasks are in the pool."""

    held: dict[tuple[str, str], list[tuple[TensorRole, torch.Tensor]]]
    nbytes: int  # of the held tensors
    spectra: dict[tuple[str, str], list[Future[torch.Tensor]]]
    qk: list[Future[QKLayer]]
    roles: dict[tuple[str, str], Future[_RoleFindings]]
    embedding: Future[EmbeddingGeometry] | None


@dataclass
class _RoleFindings:
    """What the measures of one role found, made in a pool task and merged in order."""

    label: str  # "stack.role"
    sparsity: RoleSparsity | None = None
    crosslayer: RoleCorrelation | None = None
    mlp_norms: list[tuple[int, NDArray[np.float64]]] = field(default_factory=list)
    position_bias: list[PositionBiasTable] = field(default_factory=list)
    tables: list[tuple[str, str | None]] = field(default_factory=list)  # label, digest
    gains: list[GainStats] = field(default_factory=list)
    gain_directions: GainDirections | None = None


def _spectrum_row(t: torch.Tensor) -> torch.Tensor:
    """σ² of one matrix as a (1, n) row: Gram and eigensolver in one CPU pool task."""
    return squared_singular_values(smaller_gram(t)).unsqueeze(0)


class _Pass:
    """State of one streaming pass (the per-unit work lives in its methods)."""

    def __init__(
        self, anatomy: Anatomy, config: Mapping[str, Any], device: str, pool: Executor
    ) -> None:
        self.anatomy = anatomy
        self.config = config
        self.device = torch.device(device)
        self.entries = _needed(anatomy, anatomy.source.tensor_shapes())
        self.pool = pool  # runs every measure: spectra, QK forms, roles, embedding
        self.result = BatteryResult(anatomy.model_name, anatomy.family, device)
        self.clock = StageClock(self.result.timings)
        self.result.heads, self.result.qk_skipped = head_layouts(anatomy, config)
        self.mlp_norms: dict[tuple[str, int], dict[str, Any]] = defaultdict(dict)
        self.digests: dict[str, str] = {}
        self.tables: list[str] = []  # "stack.role" of every stored token table and LM head
        # Digests exist to compare stored tables; a lone table (most encoders) needs none.
        self.compare_tables = sum(r.role in _TABLE_ROLES for r in self.entries) > 1
        try:
            self.token_table: TensorRole | None = anatomy.token_embedding()
        except AnatomyError:
            self.token_table = None
            self.result.embedding_skipped = "no token-embedding table (a vision model)"

    def tick(self, what: str, since: float) -> float:
        now = time.perf_counter()
        self.clock.add(what, now - since)
        return now

    def read(self, name: str) -> torch.Tensor:
        t = self.anatomy.source.tensor(name, torch.float32)
        self.result.reads[name] = self.result.reads.get(name, 0) + 1
        self.result.bytes_read += t.numel() * t.element_size()
        return t

    def submit_unit(self, unit: list[tuple[str, str]]) -> _SubmittedUnit:
        """Read a unit layer by layer and hand its work to the pool: each matrix's spectrum
        as it arrives, then each layer's QK forms and each role's other measures."""
        wanted = set(unit)
        mine = [r for r in self.entries if (r.stack, r.role) in wanted]
        by_layer: dict[int, list[TensorRole]] = defaultdict(list)
        for r in mine:
            by_layer[-1 if r.layer is None else r.layer].append(r)
        held: dict[tuple[str, str], list[tuple[TensorRole, torch.Tensor]]] = defaultdict(list)
        grams: dict[tuple[str, str], list[torch.Tensor]] = defaultdict(list)
        squared: dict[tuple[str, str], list[Future[torch.Tensor]]] = defaultdict(list)
        pending = 0
        form_gram = self.clock.timed("spectra", smaller_gram)
        spectrum = self.clock.timed("spectra", _spectrum_row)
        t0 = time.perf_counter()
        for layer in sorted(by_layer):
            stored: dict[str, torch.Tensor] = {}
            for r in by_layer[layer]:
                if r.tensor not in stored:
                    stored[r.tensor] = self.read(r.tensor)
                t = r.take(stored[r.tensor]).to(self.device)
                held[(r.stack, r.role)].append((r, t))
            del stored
            t0 = self.tick("read", t0)
            for r in by_layer[layer]:
                if not self._has_spectrum(r):
                    continue
                key, t = (r.stack, r.role), held[(r.stack, r.role)][-1][1]
                if self.device.type == "cpu":
                    squared[key].append(self.pool.submit(spectrum, t))
                else:
                    grams[key].append(form_gram(t))
                    pending += 8 * min(t.shape) ** 2
            if pending >= _GRAM_BUDGET:
                self._flush(grams, squared)
                pending = 0
            t0 = time.perf_counter()  # spectra time is counted by the tasks themselves
        self._flush(grams, squared)
        return _SubmittedUnit(
            held=held,
            nbytes=sum(t.numel() * t.element_size() for ts in held.values() for _, t in ts),
            spectra=squared,
            qk=self._submit_qk(held),
            roles={k: self.pool.submit(self._measure_role, k, items) for k, items in held.items()},
            embedding=self._submit_embedding(held),
        )

    def _submit_embedding(
        self, held: Mapping[tuple[str, str], list[tuple[TensorRole, torch.Tensor]]]
    ) -> Future[EmbeddingGeometry] | None:
        """The token table's geometry, a task of its own (the largest single measure)."""
        table = self.token_table
        if table is None:
            return None
        for r, t in held.get((table.stack, table.role), []):
            if r == table:
                measure = self.clock.timed("mlp/bias/embedding", embedding_geometry)
                return self.pool.submit(measure, t, label=f"{table.stack}.{table.role}")
        return None

    def gather(self, unit: _SubmittedUnit) -> None:
        """Merge a submitted unit's results, in submission order (waits for its tasks)."""
        for key, role in unit.roles.items():
            self._merge(key, role.result())
        for key, futures in unit.spectra.items():
            squared = torch.cat([f.result() for f in futures])
            self._record_spectra(key, unit.held[key], squared)
        self.result.qk.extend(f.result() for f in unit.qk)
        if unit.embedding is not None:
            self.result.embedding = unit.embedding.result()

    def _has_spectrum(self, r: TensorRole) -> bool:
        shapes = self.anatomy.source.tensor_shapes()
        return (
            r.layer is not None and r.role not in _NOT_MAPS and len(r.shape(shapes[r.tensor])) == 2
        )

    def _flush(
        self,
        grams: dict[tuple[str, str], list[torch.Tensor]],
        squared: dict[tuple[str, str], list[Future[torch.Tensor]]],
    ) -> None:
        """Solve the pending accelerator Grams of each role as one batch."""
        for key, gs in grams.items():
            if gs:
                solve = self.clock.timed("spectra", squared_singular_values)
                squared[key].append(self.pool.submit(solve, torch.stack(gs)))
                gs.clear()

    def _record_spectra(
        self,
        key: tuple[str, str],
        items: list[tuple[TensorRole, torch.Tensor]],
        squared: torch.Tensor,
    ) -> None:
        stack, role = key
        layers = [r.layer for r, _ in items if r.layer is not None]
        shape = (int(items[0][1].shape[0]), int(items[0][1].shape[1]))
        self.result.spectra[f"{stack}.{role}"] = role_spectra(stack, role, layers, squared, shape)

    def _measure_role(
        self, key: tuple[str, str], items: list[tuple[TensorRole, torch.Tensor]]
    ) -> _RoleFindings:
        """Every measure of one role but its spectra (a pool task: reads only its inputs,
        its findings are merged in order by the pass)."""
        stack, role = key
        found = _RoleFindings(label=f"{stack}.{role}")
        tensors = [t for _, t in items]
        layers = [r.layer for r, _ in items if r.layer is not None]
        per_layer = len(layers) == len(items)
        t0 = time.perf_counter()
        if tensors[0].dim() == 2:
            found.sparsity = role_sparsity(found.label, tensors, THRESHOLDS)
            t0 = self.tick("sparsity", t0)
            if per_layer and len(tensors) >= 2 and len({t.shape for t in tensors}) == 1:
                matrix = layer_cosines(tensors)
                found.crosslayer = RoleCorrelation(stack, role, matrix, tensors[0].numel())
            t0 = self.tick("crosslayer", t0)
            if role in MLP_ROLES and per_layer:
                for layer, t in zip(layers, tensors, strict=True):
                    norms = column_norms(t) if role == "mlp_down" else row_norms(t)
                    found.mlp_norms.append((layer, norms))
            if role == "position_bias" and per_layer:
                max_distance = self.config.get("relative_attention_max_distance")
                for layer, t in zip(layers, tensors, strict=True):
                    found.position_bias.append(
                        position_bias_profiles(
                            t,
                            bidirectional=stack != "decoder",
                            max_distance=int(max_distance or DEFAULT_MAX_DISTANCE),
                            stack=stack,
                            layer=layer,
                        )
                    )
            if role in _TABLE_ROLES:
                for r, t in items:
                    digest = tensor_digest(t) if self.compare_tables else None
                    found.tables.append((f"{r.stack}.{r.role}", digest))
            self.tick("mlp/bias/embedding", t0)
        elif is_gain_role(role):
            offset = gain_offset(self.anatomy.family, stack, role)
            gains = [t + offset if offset else t for t in tensors]
            for (r, _), g in zip(items, gains, strict=True):
                found.gains.append(gain_stats(g, stack=stack, role=role, layer=r.layer))
            if per_layer and len(gains) >= 2:
                found.gain_directions = gain_directions(
                    gains, stack=stack, role=role, layers=layers
                )
            self.tick("norms", t0)
        return found

    def _merge(self, key: tuple[str, str], found: _RoleFindings) -> None:
        stack, role = key
        if found.sparsity is not None:
            self.result.sparsity[found.label] = found.sparsity
        if found.crosslayer is not None:
            self.result.crosslayer[found.label] = found.crosslayer
        for layer, norms in found.mlp_norms:
            self.mlp_norms[(stack, layer)][role] = norms
        self.result.position_bias.extend(found.position_bias)
        for label, digest in found.tables:
            self.tables.append(label)
            if digest is not None:
                self.digests[label] = digest
        self.result.gains.extend(found.gains)
        if found.gain_directions is not None:
            self.result.gain_directions[found.label] = found.gain_directions

    def _submit_qk(
        self, held: Mapping[tuple[str, str], list[tuple[TensorRole, torch.Tensor]]]
    ) -> list[Future[QKLayer]]:
        """Both QK forms of every attention layer of the unit, one pool task per layer."""
        solve = self.clock.timed("qk", qk_layer)
        futures: list[Future[QKLayer]] = []
        for (stack, q_role), q_items in held.items():
            for qr, kr, cross in QK_PAIRS:
                if q_role != qr or (stack, kr) not in held:
                    continue
                layout = self.result.heads.get(stack)
                if layout is None:
                    continue  # reason already in qk_skipped
                keys = {r.layer: t for r, t in held[(stack, kr)]}
                for r, w_q in q_items:
                    if r.layer is None or r.layer not in keys:
                        continue
                    futures.append(
                        self.pool.submit(
                            solve,
                            w_q,
                            keys[r.layer],
                            n_heads=layout.n_heads,
                            n_kv_heads=layout.n_kv_heads,
                            d_head=layout.d_head,
                            stack=stack,
                            layer=r.layer,
                            cross=cross,
                        )
                    )
        return futures

    def finish(self) -> BatteryResult:
        for (stack, layer), norms in sorted(self.mlp_norms.items()):
            if "mlp_up" in norms and "mlp_down" in norms:
                self.result.mlp.append(
                    dead_neurons(
                        norms["mlp_up"],
                        norms["mlp_down"],
                        norms.get("mlp_gate"),
                        stack=stack,
                        layer=layer,
                    )
                )
        tables = [k for k in self.tables if k.endswith(".embed_tokens")]
        heads = [k for k in self.tables if k.endswith(".lm_head")]
        reference = (
            f"{self.token_table.stack}.{self.token_table.role}" if self.token_table else None
        )
        self.result.tying = tying_report(
            self.digests,
            reference=reference,
            stack_copies=[k for k in tables if k != reference],
            lm_head=heads[0] if heads else None,
            config=self.config,
        )
        self.result.qk.sort(key=lambda x: (x.stack, x.cross, x.layer))
        self.result.mlp.sort(key=lambda x: (x.stack, x.layer))
        self.result.position_bias.sort(key=lambda x: (x.stack, x.layer))
        return self.result


def run_battery(
    anatomy: Anatomy, *, config: Mapping[str, Any] | None = None, device: str = "cpu"
) -> BatteryResult:
    """Every weights-only measure, each needed tensor read once.

    `config` is the checkpoint's config.json (head layout of two-tower models, T5's
    max_distance, the tying declaration); `device` where the measures run.
    """
    start = time.perf_counter()
    cfg: Mapping[str, Any] = config if config is not None else {}
    with task_pool(device) as pool:
        state = _Pass(anatomy, cfg, device, pool)
        # Units are read ahead while the pool works on earlier ones, as long as the tensors
        # of the units in flight stay within _AHEAD_BYTES (beyond it, one unit at a time).
        in_flight: deque[_SubmittedUnit] = deque()
        for unit in _units(state.entries):
            in_flight.append(state.submit_unit(unit))
            while len(in_flight) > 1 and sum(u.nbytes for u in in_flight) > _AHEAD_BYTES:
                state.gather(in_flight.popleft())
                _trim_heap()
        while in_flight:
            state.gather(in_flight.popleft())
    result = state.finish()
    result.seconds = time.perf_counter() - start
    return result
