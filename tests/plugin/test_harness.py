"""The plugin end to end, through pytester: loads once, reports, fails per model, escapes."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from xml.etree import ElementTree

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.plugin.harness import Harness, make_harness

TINY = """
models:
  tiny-bert:
    source: synthetic:bert-tiny
    default: true
  tiny-t5:
    source: synthetic:t5-tiny
    default: true
"""


@pytest.fixture
def harness(pytester: pytest.Pytester, replica_cache: Path) -> Harness:
    return make_harness(pytester, replica_cache)


def _loads(harness: Harness) -> dict[str, dict[str, int]]:
    return {name: info["loads"] for name, info in harness.findings()["models"].items()}


def test_each_model_is_loaded_once_per_run_under_xdist(harness: Harness) -> None:
    harness.models(TINY)
    result = harness.run("-n", "2")
    result.assert_outcomes(passed=8)  # no band, no baseline compared: measured, passed
    loads = _loads(harness)
    assert set(loads) == {"tiny-bert", "tiny-t5"}
    for name, per_worker in loads.items():
        assert sum(per_worker.values()) == 1, (name, per_worker)
        assert set(per_worker) <= {"gw0", "gw1"}


def test_load_counter_sees_repeated_loads(harness: Harness) -> None:
    """Negative control: without loadgroup, tests of one model spread over both workers."""
    harness.models(TINY)
    harness.run("-n", "2", "--dist", "load").assert_outcomes(passed=8)
    assert any(sum(w.values()) > 1 for w in _loads(harness).values())


def test_findings_file_carries_values_nulls_and_provenance(harness: Harness) -> None:
    harness.models(TINY)
    result = harness.run("--junitxml=reports/junit.xml")
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(
        ["terrain: 8 findings on 2 models: 2 within band, 0 match baseline, 6 measured*"]
    )
    junit = ElementTree.parse(harness.pytester.path / "reports" / "junit.xml")
    values = {p.get("value") for p in junit.iter("property") if p.get("name") == "terrain.value"}
    assert len(values) >= 6  # every measured finding carries its value into the JUnit XML
    doc = harness.findings()
    assert doc["schema_version"] == 3
    assert doc["environment"]["packages"]["torch"]
    assert {(f["model"], f["property"]) for f in doc["findings"]} == {
        (m, p)
        for m in ("tiny-bert", "tiny-t5")
        for p in ("crosslayer_corr", "q_sparsity", "q_sparsity_scale_free", "simplex_cv")
    }
    for record in doc["findings"]:
        assert record["random_init"] is True
        assert record["null"] is not None
        assert isinstance(record["value"], float)
    simplex = next(f for f in doc["findings"] if f["property"] == "simplex_cv")
    assert simplex["n"] > 900
    assert simplex["seed"] == 0
    assert simplex["interval"]["low"] < simplex["value"] < simplex["interval"]["high"]
    t5 = doc["models"]["tiny-t5"]
    assert t5["provenance"] == "random init (synthetic replica)"
    assert len(t5["fingerprint"]) == 64
    assert t5["census"]["claimed"] == t5["census"]["tensors"]
    assert doc["errors"] == []
    assert doc["verdict"] == {
        "status": "pass",
        "failed_properties": [],
        "harness_errors": [],
        "exit_code": 0,
    }
    log = harness.test_log()
    for column in ("Model", "Property", "Value", "Expected", "Null", "CI", "Outcome"):
        assert f">{column}</th>" in log
    page = harness.page()
    assert '<h2 id="matrix">Findings matrix</h2>' in page
    assert page.count("data:image/png;base64,") == 6  # 3 plots per model: sparsity, cosine, volumes
    assert 'tiny-t5</a><br><span class="random">[random init]</span>' in page  # matrix column


def test_value_outside_band_fails_with_full_message(harness: Harness) -> None:
    """Negative control: a band the model does not meet must fail, stating everything."""
    harness.models(
        """
models:
  tiny:
    source: synthetic:bert-tiny
    default: true
    expect:
      simplex_cv: {band: [0.9, 1.0], source: "deliberately wrong"}
      q_sparsity: {band: [0.0, 0.5]}
"""
    )
    result = harness.run()
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.re_match_lines(
        [
            r".*model 'tiny', property 'simplex_cv': CV of 4-simplex volumes of the token embedding = "
            r"[0-9.]+, 95% CI \[[0-9.]+, [0-9.]+\], N=\d+; outside expected band \[0.9, 1\] "
            r"\(source: deliberately wrong\); null [0-9.]+ \(Gaussian points, D=64.*\) \[random init\]"
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_invalid_models_file_stops_before_any_test(harness: Harness) -> None:
    harness.models(
        "models:\n  tiny:\n    source: synthetic:bert-tiny\n    expect: {simplex_cv: {band: [0.5, 0.1]}}\n"
    )
    result = harness.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*models.yaml: model 'tiny': field 'expect.simplex_cv.band': band low end 0.5 is above its high end 0.1*"
        ]
    )
    assert "Traceback" not in result.stderr.str()


def test_unknown_model_name_stops_with_a_suggestion(harness: Harness) -> None:
    harness.models(TINY)
    result = harness.run("--model", "tiny-bret")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--model 'tiny-bret': not a model in *models.yaml (did you mean 'tiny-bert'?)*"]
    )


def _damaged_copies(good: Path, root: Path) -> dict[str, Path]:
    """One broken checkpoint per kind of bad input."""
    out: dict[str, Path] = {}
    no_weights = root / "no-weights"
    no_weights.mkdir()
    shutil.copy(good / "config.json", no_weights)
    out["no-weights"] = no_weights

    truncated = root / "truncated"
    shutil.copytree(good, truncated)
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    out["truncated"] = truncated

    nan = root / "nan"
    shutil.copytree(good, nan)
    tensors = load_file(str(nan / "model.safetensors"))
    tensors["encoder.layer.1.attention.self.query.weight"][0, 0] = math.nan
    save_file(tensors, str(nan / "model.safetensors"))
    out["nan"] = nan

    alien = root / "alien"
    shutil.copytree(good, alien)
    config = json.loads((alien / "config.json").read_text())
    config["model_type"] = "mamba9"
    (alien / "config.json").write_text(json.dumps(config))
    out["alien"] = alien
    return out


def test_broken_models_fail_alone_and_the_rest_is_reported(
    harness: Harness, tiny_bert: Path
) -> None:
    broken = _damaged_copies(tiny_bert, harness.pytester.path)
    entries = "".join(
        f"  {name}:\n    source: {path}\n    default: true\n" for name, path in broken.items()
    )
    harness.models(
        "models:\n  good:\n    source: synthetic:bert-tiny\n    default: true\n"
        "  missing:\n    source: ./does-not-exist\n    default: true\n" + entries
    )
    result = harness.run()
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] == 5  # good: all four; nan: simplex_cv (its NaN is in a Q tensor)
    doc = harness.findings()
    assert {f["model"] for f in doc["findings"]} == {"good", "nan"}
    nan_findings = {f["property"] for f in doc["findings"] if f["model"] == "nan"}
    assert nan_findings == {"simplex_cv"}  # the NaN sits in a Q tensor: the rest still measures
    messages = {(e["model"], e["message"]) for e in doc["errors"]}
    expected = {
        "missing": "local checkpoint directory './does-not-exist' does not exist",
        "no-weights": "no *.safetensors weights in",
        "truncated": "is not a readable safetensors file (truncated or corrupt?)",
        "nan": "tensor 'encoder.layer.1.attention.self.query.weight' in 'model.safetensors' has 1 of",
        "alien": "unknown architecture: config.json model_type 'mamba9'",
    }
    for model, fragment in expected.items():
        assert any(m == model and fragment in msg for m, msg in messages), (model, messages)
    assert result.ret == 6  # the harness could not measure some models; no property failed
    assert doc["verdict"]["status"] == "harness-error"
    assert torch.isfinite(
        load_file(str(tiny_bert / "model.safetensors"))["embeddings.word_embeddings.weight"]
    ).all()


def test_strings_from_models_are_escaped_in_the_report(harness: Harness) -> None:
    harness.models(
        'models:\n  "<script>alert(1)</script>":\n    source: synthetic:bert-tiny\n    default: true\n'
    )
    harness.run().assert_outcomes(passed=4)
    for html in (harness.page(), harness.test_log()):
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_census_fails_when_the_checkpoint_lacks_a_module_of_its_config(
    pytester: pytest.Pytester, replica_cache: Path, tiny_bert: Path
) -> None:
    """Negative control of the census: BertModel's config declares a pooler; drop it."""
    harness = make_harness(pytester, replica_cache, ("test_census.py",))
    stripped = harness.pytester.path / "no-pooler"
    shutil.copytree(tiny_bert, stripped)
    tensors = load_file(str(stripped / "model.safetensors"))
    save_file(
        {k: v for k, v in tensors.items() if not k.startswith("pooler.")},
        str(stripped / "model.safetensors"),
    )
    harness.models(
        f"models:\n  whole:\n    source: {tiny_bert}\n    default: true\n"
        f"  stripped:\n    source: {stripped}\n    default: true\n"
    )
    result = harness.run()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*model 'stripped', property 'anatomy_census'*outside expected band*"]
    )
    census = next(f for f in harness.findings()["findings"] if f["model"] == "stripped")
    assert set(census["details"]["differences"]) == {"head.pooler.weight", "head.pooler.bias"}
