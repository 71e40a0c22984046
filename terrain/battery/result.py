"""What the battery measured on one checkpoint: plain results, merged in a fixed order."""

from __future__ import annotations

from dataclasses import dataclass, field

from terrain.measures.crosslayer import RoleCorrelation
from terrain.measures.embedding import EmbeddingGeometry
from terrain.measures.esd.traps import RoleTraps
from terrain.measures.mlp import MLPLayer
from terrain.measures.norms import GainDirections, GainStats
from terrain.measures.position_bias import PositionBiasTable
from terrain.measures.qk import QKLayer
from terrain.measures.sparsity import RoleSparsity, TensorCounts
from terrain.measures.spectra import RoleSpectra
from terrain.measures.tying import TyingReport


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
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds, all threads
    reads: dict[str, int] = field(default_factory=dict)  # tensor -> reads by the first pass
    crosslayer_reads: dict[str, int] = field(default_factory=dict)  # ... by the second
    bytes_read: int = 0  # stored bytes read, both passes
    peak_working_bytes: int = 0  # the most working-set bytes the pool held at once
    sparsity: dict[str, RoleSparsity] = field(default_factory=dict)  # "stack.role"
    # each role's per-tensor tallies (layer order), so roles pool exactly across stacks
    sparsity_counts: dict[str, list[TensorCounts]] = field(default_factory=dict)
    spectra: dict[str, RoleSpectra] = field(default_factory=dict)
    spectra_skipped: dict[str, str] = field(default_factory=dict)  # "stack.role" -> reason
    traps: dict[str, RoleTraps] = field(default_factory=dict)  # "stack.role"
    traps_sampled: dict[str, str] = field(default_factory=dict)  # "stack.role" -> which layers
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
