"""What a delta pass measured: one row per compared role, plain values for findings."""

from __future__ import annotations

from dataclasses import dataclass, field

from terrain.delta.pairing import Pair, Pairing, role_label
from terrain.measures.delta import DeltaSpectrum, PairNorms
from terrain.measures.esd.common import json_float


@dataclass(frozen=True)
class TensorChange:
    """The change of one role from the base to the model."""

    stack: str
    layer: int | None
    role: str
    kind: str  # "weight", "bias", ...
    tensor: str  # the model's tensor name
    base_tensor: str  # the base's
    shape: tuple[int, ...]
    label: str  # the role in words: "encoder layer 1 q"
    norms: PairNorms
    spectrum: DeltaSpectrum | None  # per-layer 2-D maps only

    @staticmethod
    def of(pair: Pair, norms: PairNorms, spectrum: DeltaSpectrum | None) -> TensorChange:
        e = pair.entry
        return TensorChange(
            e.stack, e.layer, e.role, e.kind, e.tensor, pair.base.tensor, pair.shape,
            role_label(e), norms, spectrum,
        )  # fmt: skip

    @property
    def relative_change(self) -> float:
        return self.norms.relative_change

    @property
    def row(self) -> str:
        """The heatmap row of this role: "q", "q bias"."""
        return self.role if self.kind == "weight" else f"{self.role} {self.kind}"

    def as_dict(self) -> dict[str, object]:
        """Where the role is and how far it moved (the spectrum: `spectrum_dict`)."""
        return {
            "label": self.label,
            "stack": self.stack,
            "layer": self.layer,
            "role": self.role,
            "kind": self.kind,
            "tensor": self.tensor,
            "base_tensor": self.base_tensor,
            "shape": list(self.shape),
            "relative_change": json_float(self.norms.relative_change),
            "cosine": json_float(self.norms.cosine),
            "norm": self.norms.norm,
            "base_norm": self.norms.base_norm,
            "delta_norm": self.norms.delta_norm,
        }

    def spectrum_dict(self) -> dict[str, object]:
        """The spectrum of ΔW and the base's tail ({} for a role without a spectrum)."""
        s = self.spectrum
        if s is None:
            return {}
        return {
            "label": self.label,
            "tensor": self.tensor,
            "n": s.n,
            "rank": s.rank,
            "stable_rank": s.stable_rank,
            "effective_rank": s.effective_rank,
            "sv_max": s.sv_max,
            "base_alpha": s.base_alpha.as_dict(),
        }


@dataclass
class DeltaResult:
    """Every compared role of a model against its base, in (stack, layer, role) order."""

    model: str
    base: str
    base_source: str
    base_fingerprint: str
    pairing: Pairing
    changes: list[TensorChange] = field(default_factory=list)
    seconds: float = 0.0
    bytes_read: int = 0  # stored bytes of both checkpoints
    reads: dict[str, int] = field(default_factory=dict)  # model tensor -> reads
    base_reads: dict[str, int] = field(default_factory=dict)  # base tensor -> reads
    peak_working_bytes: int = 0

    def maps(self) -> list[TensorChange]:
        """The per-layer 2-D maps, which have a ΔW spectrum."""
        return [c for c in self.changes if c.spectrum is not None]

    def base_record(self) -> dict[str, str]:
        """The base model as every delta finding records it."""
        return {
            "name": self.base,
            "source": self.base_source,
            "fingerprint": self.base_fingerprint,
        }
