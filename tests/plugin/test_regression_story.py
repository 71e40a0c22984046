"""The CI story: record baselines, perturb the checkpoint, see exactly the affected properties fail."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from tests.plugin.harness import Harness, make_harness

Q_LAYER_1 = "encoder.layer.1.attention.self.query.weight"


@pytest.fixture
def harness(pytester: pytest.Pytester, replica_cache: Path) -> Harness:
    return make_harness(pytester, replica_cache)


def _kinds(harness: Harness) -> dict[str, int]:
    """How the last run's findings were judged, counted."""
    return dict(Counter(f["kind"] for f in harness.findings()["findings"]))


def _models(path: Path) -> str:
    return f"models:\n  mine:\n    source: {path}\n    default: true\n"


def test_record_perturb_and_compare(harness: Harness, tiny_bert: Path) -> None:
    checkpoint = harness.pytester.path / "checkpoint"
    shutil.copytree(tiny_bert, checkpoint)
    harness.models(_models(checkpoint))

    # No baseline yet: every measured property fails with the command that records one.
    first = harness.run(baselines=True)
    first.assert_outcomes(failed=4)
    first.stdout.fnmatch_lines(
        ["*no baseline of 'mine'*record one with:*", "*pytest --model mine --update-baselines*"]
    )

    harness.run("--update-baselines", baselines=True).assert_outcomes(passed=4)
    assert _kinds(harness) == {"within band": 1, "baseline recorded": 3}  # band judges first
    recorded = json.loads(
        (harness.pytester.path / "baselines" / "mine" / "q_sparsity.json").read_text()
    )
    assert recorded["model"] == "mine"
    assert recorded["baseline_format"] == 1
    assert len(recorded["fingerprint"]) == 64
    assert set(recorded["packages"]) >= {"torch", "transformers", "terrain"}
    assert "date" in recorded

    # Unperturbed rerun: everything passes; the banded one within its band, the others
    # by matching their baseline, and the terminal says which (status letters, summary).
    rerun = harness.run(baselines=True)
    rerun.assert_outcomes(passed=4)
    assert _kinds(harness) == {"within band": 1, "matches baseline": 3}
    rerun.stdout.fnmatch_lines(["*terrain: 4 findings on 1 model: 1 within band, 3 match*"])

    # Scale one layer's Q by 3: the thresholded Q fraction moves; the scale-free companion,
    # the cosines (scale-invariant) and the embedding simplices do not.
    tensors = load_file(str(checkpoint / "model.safetensors"))
    tensors[Q_LAYER_1] = tensors[Q_LAYER_1] * 3
    save_file(tensors, str(checkpoint / "model.safetensors"))
    result = harness.run(baselines=True)
    result.assert_outcomes(failed=1, passed=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*model 'mine', property 'q_sparsity': regressed against the baseline of 'mine' "
            "(the checkpoint changed: its fingerprint * differs from the baseline's *):",
            "key*baseline*new*difference*tolerance",
            "value *abs 0.01 + rel 0*<-- outside",
        ]
    )
    doc = harness.findings()
    failed = {f["property"] for f in doc["findings"] if f["outcome"] == "failed"}
    assert failed == {"q_sparsity"}
    assert doc["verdict"]["status"] == "fail"
    assert doc["verdict"]["exit_code"] == 1
    regressed = next(f for f in doc["findings"] if f["property"] == "q_sparsity")
    assert regressed["baseline"]["status"] == "regressed"
    assert "regressed" in harness.page()


def test_new_checkpoint_against_another_models_baseline(harness: Harness, tiny_bert: Path) -> None:
    """`--baseline-of`: a new checkpoint is checked against the recorded model's baseline."""
    harness.models(_models(tiny_bert))
    harness.run("--update-baselines", baselines=True)
    step = harness.pytester.path / "step-2000"
    shutil.copytree(tiny_bert, step)
    tensors = load_file(str(step / "model.safetensors"))
    tensors[Q_LAYER_1] = tensors[Q_LAYER_1] * 3
    save_file(tensors, str(step / "model.safetensors"))
    result = harness.run("--model", str(step), "--baseline-of", "mine", baselines=True)
    result.assert_outcomes(failed=1, passed=3)
    result.stdout.fnmatch_lines(
        [
            f"*model '{step}', property 'q_sparsity': regressed against the baseline of "
            "'mine' (checked with --baseline-of*):"
        ]
    )


def test_stale_baseline_is_reported_not_compared(harness: Harness, tiny_bert: Path) -> None:
    harness.models(_models(tiny_bert))
    harness.run("--update-baselines", baselines=True)
    path = harness.pytester.path / "baselines" / "mine" / "simplex_cv.json"
    doc = json.loads(path.read_text())
    doc["measure_version"] = 0
    doc["values"]["value"] = 123.0  # would fail a comparison; must not be compared
    path.write_text(json.dumps(doc))
    result = harness.run("-k", "simplex", baselines=True)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*property 'simplex_cv': stale baseline: *measure version 0*not compared*",
            "terrain: 1 findings on 1 model: *0 regressed, 1 stale baselines*",
        ]
    )
    assert "123" not in result.stdout.str()


def test_ad_hoc_checkpoint_is_measured_without_a_baseline(
    harness: Harness, tiny_bert: Path
) -> None:
    """`pytest --model PATH`: no models.yaml entry, so no baseline is required (only compared
    with --baseline-of); a models.yaml entry without one still fails (tested above)."""
    harness.models(_models(tiny_bert))
    result = harness.run("--model", str(tiny_bert), baselines=True)
    result.assert_outcomes(passed=4)
    assert _kinds(harness) == {"within band": 1, "measured": 3}  # 3 without a band
    records = harness.findings()["findings"]
    assert {r["baseline"]["status"] for r in records} == {"missing"}
