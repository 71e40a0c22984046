"""Recorded baselines: a property's values for a model, compared on later runs within tolerances.

One JSON file per (model, property) under the baseline directory, so that xdist workers
never write the same file. Each file carries the harness's baseline format version and
the measure's definition version: a baseline from an older format or another measure
definition is *stale*, reported as such and never compared.

Why not pytest-regressions: its files are keyed by test node (ids change under
`--dist loadgroup`), it records no provenance (fingerprint, versions, commit), knows no
stale-definition state, cannot compare one model against another's baseline, and
compares sampled values by equality rather than within their confidence intervals.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from terrain.errors import TerrainError
from terrain.findings import Finding

BASELINE_FORMAT = 1
Status = Literal["match", "regressed", "missing", "stale", "recorded"]


@dataclass(frozen=True)
class Tolerance:
    abs: float = 0.0
    rel: float = 0.0

    def allows(self, old: float, new: float, extra: float = 0.0) -> bool:
        if math.isnan(old) or math.isnan(new):
            return math.isnan(old) and math.isnan(new)
        return abs(new - old) <= self.abs + self.rel * abs(old) + extra


# Defaults per property: deterministic weight measures move only when the weights move,
# so a new checkpoint may drift a little (abs) before it counts as a regression.
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "q_sparsity": Tolerance(abs=0.01),
    "q_sparsity_scale_free": Tolerance(abs=0.005),
    "crosslayer_corr": Tolerance(abs=0.01),
    # Sampled: compared within the combined confidence interval, plus this margin.
    "simplex_cv": Tolerance(abs=0.0),
    # Counts of the checkpoint's own tensors: any change is a different architecture.
    "anatomy_census": Tolerance(abs=0.0),
    # Exactness claims: the value is 0 when they hold; any change is a regression.
    "modulator_lerp_alpha0": Tolerance(abs=0.0),
    "modulator_field_alpha0": Tolerance(abs=0.0),
    "modulator_null_space": Tolerance(abs=0.0),
    "modulator_detach": Tolerance(abs=0.0),
    "modulator_training_step": Tolerance(abs=0.0),
    "modulator_alpha_sweep": Tolerance(abs=1e-9, rel=1e-6),
    # Symmetry errors: ~1e-15 in float64; where the library computes in float32, ~1e-7.
    "qk_gauge": Tolerance(abs=1e-5),
    "vo_gauge": Tolerance(abs=1e-10),
    "mlp_permutation": Tolerance(abs=1e-10),
    "mlp_scaling": Tolerance(abs=1e-10),
    "residual_rotation": Tolerance(abs=1e-5),
    "reference_forward": Tolerance(abs=1e-5),
    "module_call_census": Tolerance(abs=0.0),
    # Representation geometry: deterministic forwards (abs), sampled ones within their CIs.
    "digit_manifold": Tolerance(abs=1e-4),
    "category_lift": Tolerance(abs=1e-4),
    "layer_geometry": Tolerance(abs=1e-4),
    "wordnet_path_spearman": Tolerance(abs=1e-4),
    "wordnet_wup_spearman": Tolerance(abs=1e-4),
    "wordnet_band_gradient": Tolerance(abs=1e-4),
    "hypernym_decay": Tolerance(abs=1e-4),
    "lexname_lift": Tolerance(abs=1e-4),
    "wordnet_stability": Tolerance(abs=1e-4),
    # The weights-only battery (terrain/battery.py): shares and ratios move little between
    # checkpoints of one model; counts and exact claims not at all.
    "weight_sparsity": Tolerance(abs=0.01),
    "weight_sparsity_scale_free": Tolerance(abs=0.005),
    "spectral_stable_rank": Tolerance(abs=0.01),
    "spectral_participation_ratio": Tolerance(abs=0.01),
    "spectral_condition_number": Tolerance(abs=0.01),  # log10 units
    "qk_symmetric_balance": Tolerance(abs=0.01),
    "qk_cross_attention_balance": Tolerance(abs=0.01),
    "qk_residual_inertia": Tolerance(abs=0.0),
    "qk_positive_mass": Tolerance(abs=0.01),
    "mlp_dead_neurons": Tolerance(abs=0.005),
    "mlp_dead_gates": Tolerance(abs=0.005),
    "norm_gain_spread": Tolerance(abs=0.01),
    "norm_gain_directions": Tolerance(abs=0.01),
    "position_bias_mixed_heads": Tolerance(abs=0.05),
    "weight_tying": Tolerance(abs=0.0),
    "embedding_participation_ratio": Tolerance(abs=0.01),
    # Sampled: within its interval; its exact companions (norms, cosine sd) to rounding,
    # which moves with the summation order of the linear-algebra library.
    "embedding_mean_cosine": Tolerance(abs=1e-9),
    "crosslayer_corr_mlp": Tolerance(abs=0.01),
    "layer_variation": Tolerance(abs=0.01),
}
FALLBACK_TOLERANCE = Tolerance(abs=1e-9, rel=1e-6)


def tolerance_for(prop: str, overrides: Mapping[str, Tolerance]) -> Tolerance:
    return overrides.get(prop) or DEFAULT_TOLERANCES.get(prop, FALLBACK_TOLERANCE)


@dataclass(frozen=True)
class Row:
    """One compared value: what a failure's diff table shows."""

    key: str
    old: float | None
    new: float | None
    tolerance: str
    ok: bool

    @property
    def difference(self) -> float | None:
        return None if self.old is None or self.new is None else self.new - self.old


@dataclass(frozen=True)
class Comparison:
    model: str
    property: str
    baseline_of: str
    status: Status
    rows: tuple[Row, ...] = ()
    message: str = ""

    def table(self) -> str:
        """key | baseline | new | difference | tolerance, failing rows marked."""
        head = f"{'key':<34} {'baseline':>12} {'new':>12} {'difference':>12}  tolerance"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            mark = "" if r.ok else "   <-- outside"
            lines.append(
                f"{r.key:<34} {_num(r.old):>12} {_num(r.new):>12} {_num(r.difference):>12}"
                f"  {r.tolerance}{mark}"
            )
        return "\n".join(lines)

    def as_record(self) -> dict[str, Any]:
        return {
            "baseline_of": self.baseline_of,
            "status": self.status,
            "message": self.message,
            "rows": [
                {
                    "key": r.key,
                    "baseline": r.old,
                    "new": r.new,
                    "difference": r.difference,
                    "tolerance": r.tolerance,
                    "ok": r.ok,
                }
                for r in self.rows
            ],
        }


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.6g}"


def tracked_values(finding: Finding) -> dict[str, float]:
    return {"value": float(finding.value), **{k: float(v) for k, v in finding.tracked.items()}}


def _slug(name: str) -> str:
    """A file-system-safe, collision-free folder name for a model name (paths, ids, markup)."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"
    if clean == name:
        return name
    return f"{clean[:60]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


class BaselineStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, model: str, prop: str) -> Path:
        return self.root / _slug(model) / f"{prop}.json"

    def record(self, finding: Finding, provenance: Mapping[str, Any], tolerance: Tolerance) -> Path:
        path = self.path(finding.model, finding.property)
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "baseline_format": BASELINE_FORMAT,
            "measure_version": finding.version,
            "model": finding.model,
            "property": finding.property,
            "statistic": finding.statistic,
            "values": tracked_values(finding),
            "interval": (
                [finding.interval.low, finding.interval.high] if finding.interval else None
            ),
            "seed": finding.seed,
            "n": finding.n,
            "tolerance": {"abs": tolerance.abs, "rel": tolerance.rel},
            **provenance,
        }
        path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        return path

    def compare(self, finding: Finding, baseline_of: str, tolerance: Tolerance) -> Comparison:
        path = self.path(baseline_of, finding.property)
        ids = (finding.model, finding.property, baseline_of)
        if not path.is_file():
            return Comparison(*ids, status="missing", message=f"no baseline file {path}")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            old_values: dict[str, float] = doc["values"]
            fmt, version = doc["baseline_format"], doc["measure_version"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise TerrainError(
                f"baseline {str(path)!r} is not a readable baseline file: {e}"
            ) from None
        if fmt != BASELINE_FORMAT or version != finding.version:
            return Comparison(
                *ids,
                status="stale",
                message=(
                    f"baseline {path} was written for baseline format {fmt}, measure version "
                    f"{version}; this harness writes format {BASELINE_FORMAT}, measure version "
                    f"{finding.version}: not compared"
                ),
            )
        extra = _interval_slack(doc.get("interval"), finding)
        new_values = tracked_values(finding)
        rows = []
        for key in sorted(set(old_values) | set(new_values)):
            old, new = old_values.get(key), new_values.get(key)
            slack = extra if key == "value" else 0.0
            ok = old is not None and new is not None and tolerance.allows(old, new, slack)
            text = f"abs {tolerance.abs:g} + rel {tolerance.rel:g}"
            if slack:
                text += f" + CI {slack:.3g}"
            rows.append(Row(key, old, new, text, ok))
        status: Status = "match" if all(r.ok for r in rows) else "regressed"
        return Comparison(*ids, status=status, rows=tuple(rows), message=str(path))


def _interval_slack(old: list[float] | None, finding: Finding) -> float:
    """Sampled measures: half-widths of both intervals combined in quadrature."""
    if not old or finding.interval is None:
        return 0.0
    old_half = (old[1] - old[0]) / 2
    new_half = (finding.interval.high - finding.interval.low) / 2
    return math.hypot(old_half, new_half)
