"""Trajectories: the checkpoints of one architecture in a run, in order, property by property.

A run that measures several checkpoints of one architecture (a training run's steps, a
model and its fine-tunes) gets, for each architecture with two or more of them, every
scalar property as a series over the checkpoints, beside its null, and the list of
checkpoints where a value left its baseline tolerance.

Everything here is read from the run's findings document as findings.json holds it (its
`models` and `findings`): a saved findings.json gives the same trajectories. Nothing is
measured or compared again: the values, nulls and baseline comparisons are the findings'.

Rules (docs/findings.md):
- one architecture: the same census family and shape (ARCHITECTURE_FIELDS: tensor and
  parameter counts, layers per stack, heads, widths, and counts per role), so that every
  checkpoint has the same tensors; a model that was not measured (no census) or is a
  random-init replica (its values are nulls, not a checkpoint's) joins none;
- order: by each model's `step` (models.yaml) when every checkpoint has one, else as the
  models were given (the `models` mapping's order, the command line's); ties keep it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

# The census fields that make two checkpoints one architecture (terrain.anatomy's census).
ARCHITECTURE_FIELDS = (
    "family",
    "tensors",
    "parameters",
    "layers",
    "layer_types",
    "heads",
    "kv_heads",
    "d_model",
    "d_head",
    "d_ff",
    "by_role",
)
COMPARED = ("match", "regressed")  # baseline statuses of a finding that was compared


@dataclass(frozen=True)
class Checkpoint:
    name: str
    step: int | None
    at: int  # where it stands on the x axis: its step, or its 1-based position


@dataclass(frozen=True)
class Series:
    """One scalar property over the checkpoints (their order), beside its null."""

    property: str
    statistic: str
    values: tuple[float, ...]
    null_means: tuple[float, ...]  # NaN where the finding has no null
    null_sds: tuple[float, ...]  # NaN where the null has no spread (analytic, one seed)
    departed: tuple[bool, ...]  # the value left its baseline tolerance there


@dataclass(frozen=True)
class Departure:
    """A compared value outside its baseline tolerance: one failing row of a comparison."""

    property: str
    model: str
    at: int
    baseline_of: str
    key: str  # "value", or a tracked value's name
    baseline: float | None
    new: float | None
    difference: float | None
    tolerance: str


@dataclass(frozen=True)
class Trajectory:
    family: str
    checkpoints: tuple[Checkpoint, ...]
    by_step: bool
    series: tuple[Series, ...]
    departures: tuple[Departure, ...]
    compared: int  # findings of these checkpoints compared with a baseline
    not_plotted: tuple[str, ...]  # properties not a finite number on every checkpoint


def architecture(info: Mapping[str, Any]) -> str | None:
    """A model's architecture as a comparable key; None when it joins no trajectory."""
    census = info.get("census")
    if not isinstance(census, Mapping) or info.get("random_init") is not False:
        return None
    return json.dumps({k: census.get(k) for k in ARCHITECTURE_FIELDS}, sort_keys=True)


def trajectories(
    models: Mapping[str, Mapping[str, Any]], findings: Sequence[Mapping[str, Any]]
) -> list[Trajectory]:
    """Every architecture of the run with two or more checkpoints, in the order first seen."""
    groups: dict[str, list[str]] = {}
    for name, info in models.items():
        key = architecture(info)
        if key is not None:
            groups.setdefault(key, []).append(name)
    records = {(str(f["model"]), str(f["property"])): f for f in findings}
    return [_trajectory(models, names, records) for names in groups.values() if len(names) >= 2]


def _trajectory(
    models: Mapping[str, Mapping[str, Any]],
    names: list[str],
    records: Mapping[tuple[str, str], Mapping[str, Any]],
) -> Trajectory:
    steps = [_step(models[n]) for n in names]
    known = [s for s in steps if s is not None]
    by_step = len(known) == len(names)
    if by_step:  # sorted by step; a tie keeps the order given
        order = sorted(range(len(names)), key=known.__getitem__)
        checkpoints = tuple(Checkpoint(names[i], known[i], known[i]) for i in order)
    else:
        checkpoints = tuple(
            Checkpoint(n, s, position)
            for position, (n, s) in enumerate(zip(names, steps, strict=True), 1)
        )
    props = sorted({p for m, p in records if m in names})
    series, not_plotted = [], []
    for prop in props:
        row = [records.get((c.name, prop)) for c in checkpoints]
        present = [r for r in row if r is not None]
        if len(present) == len(row) and all(_number(r.get("value")) for r in present):
            series.append(_series(prop, present))
        else:
            not_plotted.append(prop)
    mine = [records[(c.name, p)] for c in checkpoints for p in props if (c.name, p) in records]
    at = {c.name: c.at for c in checkpoints}
    departures = tuple(d for r in mine for d in _departures(r, at[str(r["model"])]))
    compared = sum(1 for r in mine if (r.get("baseline") or {}).get("status") in COMPARED)
    family = str(models[names[0]]["census"].get("family"))
    return Trajectory(
        family, checkpoints, by_step, tuple(series), departures, compared, tuple(not_plotted)
    )


def _step(info: Mapping[str, Any]) -> int | None:
    step = info.get("step")
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _series(prop: str, row: Sequence[Mapping[str, Any]]) -> Series:
    nulls = [r.get("null") or {} for r in row]
    return Series(
        property=prop,
        statistic=str(row[0].get("statistic") or ""),
        values=tuple(float(r["value"]) for r in row),
        null_means=tuple(_float(n.get("value")) for n in nulls),
        null_sds=tuple(_float(n.get("sd")) for n in nulls),
        departed=tuple(any(d.key == "value" for d in _departures(r, 0)) for r in row),
    )


def _float(value: object) -> float:
    return float(value) if _number(value) else math.nan


def _departures(record: Mapping[str, Any], at: int) -> list[Departure]:
    """The failing rows of the finding's own baseline comparison (none if not regressed)."""
    baseline = record.get("baseline") or {}
    if baseline.get("status") != "regressed":
        return []
    return [
        Departure(
            property=str(record["property"]),
            model=str(record["model"]),
            at=at,
            baseline_of=str(baseline.get("baseline_of")),
            key=str(row.get("key")),
            baseline=row.get("baseline"),
            new=row.get("new"),
            difference=row.get("difference"),
            tolerance=str(row.get("tolerance") or ""),
        )
        for row in baseline.get("rows") or ()
        if not row.get("ok")
    ]
