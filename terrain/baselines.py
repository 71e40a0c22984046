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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from terrain.atomic import write_text
from terrain.errors import TerrainError
from terrain.findings import Finding
from terrain.report.environment import package_versions

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
    changed: str = ""  # what differs from the baseline's checkpoint or harness, in words

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
            "changed": self.changed,
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
    """Baselines recorded under `root`; read from `root`, else from the read-only
    `fallbacks` (the baselines terrain ships for its own models file's entries)."""

    def __init__(self, root: Path, fallbacks: Sequence[Path] = ()) -> None:
        self.root = root
        self.fallbacks = tuple(fallbacks)

    def path(self, model: str, prop: str) -> Path:
        """Where a baseline of (model, property) is recorded."""
        return self.root / _slug(model) / f"{prop}.json"

    def find(self, model: str, prop: str) -> Path:
        """Where it is read from: the recorded one, else a shipped one, else `path`."""
        relative = Path(_slug(model)) / f"{prop}.json"
        for folder in (self.root, *self.fallbacks):
            if (folder / relative).is_file():
                return folder / relative
        return self.path(model, prop)

    def record(self, finding: Finding, provenance: Mapping[str, Any], tolerance: Tolerance) -> Path:
        path = self.path(finding.model, finding.property)
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
        write_text(path, json.dumps(document, indent=1, sort_keys=True) + "\n")
        return path

    def compare(
        self,
        finding: Finding,
        baseline_of: str,
        tolerance: Tolerance,
        *,
        fingerprint: str | None = None,
    ) -> Comparison:
        """The finding against its baseline; `fingerprint` (the checkpoint's) tells a
        changed checkpoint from a changed harness."""
        path = self.find(baseline_of, finding.property)
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
        changed = _what_changed(doc, finding, baseline_of, fingerprint)
        return Comparison(*ids, status=status, rows=tuple(rows), message=str(path), changed=changed)


def _what_changed(
    doc: Mapping[str, Any], finding: Finding, baseline_of: str, fingerprint: str | None
) -> str:
    """Whether the checkpoint or the harness differs from the baseline's, in words."""
    if baseline_of != finding.model:
        return "checked with --baseline-of: the checkpoint is meant to differ"
    old = doc.get("fingerprint")
    if fingerprint is not None and isinstance(old, str) and old != fingerprint:
        return (
            f"the checkpoint changed: its fingerprint {fingerprint[:12]}… differs from the "
            f"baseline's {old[:12]}…"
        )
    recorded = doc.get("packages")
    packages: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    now = package_versions()
    moved = sorted(k for k in now if k in packages and packages[k] != now[k])
    env = (
        "; packages differ: " + ", ".join(f"{k} {packages[k]} → {now[k]}" for k in moved)
        if moved
        else ""
    )
    same = "the same checkpoint" if isinstance(old, str) else "no recorded fingerprint"
    return f"the harness changed: {same} (fingerprint {str(old)[:12]}…){env}"


def _interval_slack(old: list[float] | None, finding: Finding) -> float:
    """Sampled measures: half-widths of both intervals combined in quadrature."""
    if not old or finding.interval is None:
        return 0.0
    old_half = (old[1] - old[0]) / 2
    new_half = (finding.interval.high - finding.interval.low) / 2
    return math.hypot(old_half, new_half)
