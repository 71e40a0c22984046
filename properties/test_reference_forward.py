"""The anatomy reproduces the model: a forward written from its roles equals the library's.

- Every block, from the library's own input to that block, recomputed with the family's
  reference (terrain.reference: x·Wᵀ + b, row-indexed embeddings, LayerNorm/RMSNorm from
  their formulas, the family's attention scaling, masks, position bias or RoPE), the
  stacks' embeddings from the token ids, and each stack chained from the reference
  embeddings through every reference block: relative error ≤ 1e-5 (float32 precision).
- The module-call census of one forward (leaf-module calls by kind, through forward
  hooks) equals what the config predicts, written from the model code (terrain.tracing).
"""

from __future__ import annotations

import pytest
import torch

from plugins.assertions import check
from plugins.recording import Recorder
from terrain.errors import TerrainError
from terrain.findings import Expected, Finding
from terrain.model import LoadedModel
from terrain.reference import TOLERANCE, NotReproducedError, reference_families, reproduce
from terrain.tracing import (
    NO_OP_TYPES,
    NotPredictedError,
    call_census,
    census_by_kind,
    forward_inputs,
    predicted_census,
)

DTYPE = "float64"  # the module the symmetry properties build: no second copy per worker
SEQ_LEN = 8
INPUT_SEED = 0


def _inputs(model: LoadedModel) -> dict[str, object]:
    return forward_inputs(
        model.checkpoint.config,
        seq_len=SEQ_LEN,
        seed=INPUT_SEED,
        device=model.device,
        dtype=torch.float64,
    )


def _module(model: LoadedModel) -> torch.nn.Module:
    try:
        module: torch.nn.Module = model.module(DTYPE)
    except TerrainError as e:
        pytest.skip(f"model {model.name!r}: not applicable, no module to run: {e}")
    return module


def test_anatomy_reproduces_block_output(model: LoadedModel, record_finding: Recorder) -> None:
    if model.anatomy.family not in reference_families():
        pytest.skip(
            f"model {model.name!r}: not reproduced: no reference forward for family "
            f"{model.anatomy.family!r} (written: {', '.join(reference_families())})"
        )
    module = _module(model)
    try:
        result = reproduce(module, model.anatomy, model.checkpoint.config, _inputs(model))
    except NotReproducedError as e:
        pytest.skip(f"model {model.name!r}: not reproduced: {e}")
    finding = Finding(
        model=model.name,
        property="reference_forward",
        statistic="max relative error of reference vs library (blocks, embeddings, chained)",
        value=result.max_error,
        expected=Expected(None, TOLERANCE, "float32 precision: the anatomy's roles are the model"),
        null=None,
        n=len(result.comparisons),
        random_init=model.random_init,
        details={
            "worst": result.worst.what,
            "comparisons": [c.as_dict() for c in result.comparisons],
            "dtype": DTYPE,
            "seq_len": SEQ_LEN,
            "input_seed": INPUT_SEED,
        },
    )
    record_finding(finding)
    check(finding)


def test_module_call_census_matches_config(model: LoadedModel, record_finding: Recorder) -> None:
    config = model.checkpoint.config
    try:
        predicted = predicted_census(config)
    except NotPredictedError as e:
        pytest.skip(f"model {model.name!r}: not predicted: {e}")
    calls = call_census(_module(model), _inputs(model))
    measured = census_by_kind(calls)
    kinds = sorted(set(predicted) | set(measured))
    off = {k: {"predicted": predicted.get(k, 0), "measured": measured.get(k, 0)} for k in kinds}
    off = {k: v for k, v in off.items() if v["predicted"] != v["measured"]}
    finding = Finding(
        model=model.name,
        property="module_call_census",
        statistic="module kinds whose call count differs from the config's prediction",
        value=float(len(off)),
        expected=Expected(0.0, 0.0, "prediction from config.json and the model code"),
        null=None,
        random_init=model.random_init,
        details={
            "predicted": predicted,
            "measured": measured,
            "by_type": dict(sorted(calls.items())),
            "mismatched": off,
            "not_counted": sorted(NO_OP_TYPES),
            "total_calls": sum(measured.values()),
        },
    )
    record_finding(finding)
    check(finding)
