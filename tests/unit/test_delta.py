"""Deltas against a base model: pairing, the streaming pass, the checks and their bands."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from terrain.anatomy import Anatomy, TensorRole, build_anatomy
from terrain.anatomy.base import Dimensions
from terrain.anatomy.meta import MetaSource
from terrain.checkpoint import Checkpoint
from terrain.checks.delta import UpperBound
from terrain.config import ModelSpec, parse_models
from terrain.delta import comparable, pair_roles, run_deltas
from terrain.errors import CheckpointError, ConfigError, DeltaError
from terrain.model import LoadedModel, load_model
from terrain.property import NotApplicableError, declarations
from terrain.sources import SourceContext
from terrain.workpool import MemoryBudget
from tests.conftest import CONFIGS

Q0 = "encoder.layer.0.attention.self.query.weight"


class _Shapes(MetaSource):
    """A tensor source of shapes only (pairing reads no values): zeros where one is read."""

    def tensor(self, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.zeros(self.tensor_shapes()[name], dtype=dtype)


def _anatomy(
    name: str, roles: dict[str, tuple[TensorRole, tuple[int, ...]]], family: str = "bert"
) -> Anatomy:
    dims = Dimensions(8, 2, 4, 16, 10, {"encoder": 2})
    source = _Shapes(name, {t: shape for t, (_, shape) in roles.items()})
    return Anatomy(family, source, dims, tuple(r for r, _ in roles.values()), {})


def _role(tensor: str, role: str, layer: int | None, kind: str = "weight") -> TensorRole:
    return TensorRole(tensor, "encoder" if layer is not None else "embeddings", role, kind, layer)


def _roles(prefix: str = "", vocab: int = 10) -> dict[str, tuple[TensorRole, tuple[int, ...]]]:
    names = {
        f"{prefix}embeddings.word.weight": (None, "embed_tokens", "weight", (vocab, 8)),
        f"{prefix}layer.0.q.weight": (0, "q", "weight", (8, 8)),
        f"{prefix}layer.0.q.bias": (0, "q", "bias", (8,)),
        f"{prefix}layer.1.q.weight": (1, "q", "weight", (8, 8)),
    }
    return {
        t: (_role(t, role, layer, kind), shape) for t, (layer, role, kind, shape) in names.items()
    }


def test_tensors_pair_by_role_and_the_rest_is_listed() -> None:
    model = _roles(prefix="bert.", vocab=12)  # another prefix, a grown vocabulary
    model["bert.layer.1.mlp_up.weight"] = (
        _role("bert.layer.1.mlp_up.weight", "mlp_up", 1),
        (16, 8),
    )
    base = _roles()
    base["layer.0.k.weight"] = (_role("layer.0.k.weight", "k", 0), (8, 8))
    pairing = pair_roles(_anatomy("m", model), _anatomy("b", base))
    assert [(p.entry.tensor, p.base.tensor) for p in pairing.pairs] == [
        ("bert.layer.0.q.bias", "layer.0.q.bias"),
        ("bert.layer.0.q.weight", "layer.0.q.weight"),
        ("bert.layer.1.q.weight", "layer.1.q.weight"),
    ]
    assert [p.is_map for p in pairing.pairs] == [False, True, True]
    assert pairing.only_model == ("bert.layer.1.mlp_up.weight",)
    assert pairing.only_base == ("layer.0.k.weight",)
    assert pairing.listing()["shape_differs"] == [
        {
            "role": "embeddings embed_tokens",
            "tensor": "bert.embeddings.word.weight",
            "shape": [12, 8],
            "base_tensor": "embeddings.word.weight",
            "base_shape": [10, 8],
        }
    ]


def test_another_family_or_nothing_in_common_is_refused() -> None:
    with pytest.raises(
        DeltaError,
        match="base model 'b' is a t5 checkpoint and model 'm' a bert one: deltas compare "
        "two checkpoints of one architecture",
    ):
        comparable(_anatomy("m", _roles()), _anatomy("b", _roles(), family="t5"))
    wide = {t: (r, tuple(2 * s for s in shape)) for t, (r, shape) in _roles().items()}
    with pytest.raises(
        DeltaError,
        match=r"base model 'b' shares no tensor of the same shape with model 'm' \(4 roles in "
        r"common, all of another shape\)",
    ):
        comparable(_anatomy("m", _roles()), _anatomy("b", wide))


def _checkpoint(path: Path, name: str) -> Anatomy:
    ckpt = Checkpoint(path, name=name)
    return build_anatomy(ckpt, ckpt.config)


def _scaled(folder: Path, tensor: str, factor: float) -> None:
    tensors = load_file(str(folder / "model.safetensors"))
    tensors[tensor] = tensors[tensor] * factor
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def test_the_pass_reads_each_tensor_once_within_its_budget(
    tiny_bert: Path, bert_copy: Path
) -> None:
    _scaled(bert_copy, Q0, 3.0)
    model, base = _checkpoint(bert_copy, "copy"), _checkpoint(tiny_bert, "bert")
    budget = MemoryBudget(24 << 20)
    result = run_deltas(model, base, base_source="b", base_fingerprint="f" * 64, budget=budget)
    changes = {c.tensor: c.relative_change for c in result.changes}
    assert changes[Q0] == pytest.approx(2.0, rel=1e-6)
    assert {t: v for t, v in changes.items() if t != Q0} == dict.fromkeys(set(changes) - {Q0}, 0.0)
    roles = {r.tensor for r in model.roles}
    assert result.reads == dict.fromkeys(roles, 1)
    assert result.base_reads == dict.fromkeys({r.tensor for r in base.roles}, 1)
    assert 0 < result.peak_working_bytes <= budget.bytes
    assert len(result.maps()) == 3 * 6  # q k v o mlp_up mlp_down of 3 layers
    assert result.base_record() == {"name": "bert", "source": "b", "fingerprint": "f" * 64}


def test_non_finite_base_weights_fail_naming_the_tensor(tiny_bert: Path, bert_copy: Path) -> None:
    tensors = load_file(str(bert_copy / "model.safetensors"))
    tensors[Q0][0, 0] = math.nan
    save_file(tensors, str(bert_copy / "model.safetensors"), metadata={"format": "pt"})
    model, base = _checkpoint(tiny_bert, "bert"), _checkpoint(bert_copy, "broken")
    with pytest.raises(CheckpointError, match=f"model 'broken': tensor '{Q0}' holds NaN or Inf"):
        run_deltas(model, base, base_source="x", base_fingerprint="", budget=MemoryBudget(1 << 30))


def _loaded(path: Path, name: str, cache: Path) -> LoadedModel:
    ctx = SourceContext((CONFIGS,), cache)
    return load_model(ModelSpec(name=name, source=str(path)), ctx, device="cpu")


def test_the_checks_name_the_tensor_beyond_the_band(
    tiny_bert: Path, bert_copy: Path, replica_cache: Path
) -> None:
    _scaled(bert_copy, Q0, 3.0)
    model = _loaded(bert_copy, "copy", replica_cache)
    model.base = _loaded(tiny_bert, "bert", replica_cache)
    change = declarations().get("delta_relative_change")
    failed = change.evaluate(model, UpperBound(max=0.5)).finding
    assert failed.verdict == "fail"
    assert failed.value == pytest.approx(2.0, rel=1e-6)
    assert "1 of 55 outside at most 0.5: encoder layer 0 q; the largest at encoder layer 0 q" in (
        failed.statistic
    )
    assert failed.details["outside_band"] == ["encoder layer 0 q"]
    assert failed.details["base_model"]["fingerprint"] == model.base.checkpoint.fingerprint
    assert change.evaluate(model, UpperBound(max=2.5)).finding.verdict == "pass"
    measured = change.evaluate(model, None)
    assert measured.finding.verdict == "no-expectation"
    assert [e.title for e in measured.evidence] == ["relative change per layer and role"]
    rank = declarations().get("delta_effective_rank").evaluate(model, UpperBound(max=1.0))
    assert rank.finding.verdict == "fail"  # 2·W_Q is of full rank
    assert rank.finding.details["outside_band"] == ["encoder layer 0 q"]
    assert rank.finding.null is not None
    assert rank.finding.null.value > 0


def test_without_a_base_model_the_checks_do_not_apply(tiny_bert: Path, replica_cache: Path) -> None:
    model = _loaded(tiny_bert, "bert", replica_cache)
    for name in ("delta_relative_change", "delta_effective_rank", "delta_alpha"):
        with pytest.raises(NotApplicableError, match=r"pass --base-model NAME_OR_PATH"):
            declarations().get(name).evaluate(model, None)
        assert not declarations().get(name).compared_with_baselines


def _parse(expect: object) -> object:
    text = yaml.safe_dump({"models": {"m": {"source": "x", "expect": expect}}})
    spec = parse_models(yaml.safe_load(text), Path("models.yaml"), declarations()).models["m"]
    return spec.expect


def test_bands_in_the_models_file() -> None:
    got = _parse({"delta_relative_change": {"max": 0.5}, "delta_effective_rank": {"max": 8}})
    assert got == {
        "delta_relative_change": UpperBound(max=0.5),
        "delta_effective_rank": UpperBound(max=8.0),
    }
    for bad, message in (
        (
            {"max": -1.0},
            "field 'expect.delta_relative_change.max': Input should be greater than or equal to 0",
        ),
        ({"max": 0.5, "band": [0, 1]}, "give either max or band, not both"),
        ({"most": 0.5}, "unknown field 'expect.delta_relative_change.most'"),
    ):
        with pytest.raises(ConfigError, match=message):
            _parse({"delta_relative_change": bad})
