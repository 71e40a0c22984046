"""models.yaml validation: every invalid input stops with one message naming file, model, field."""

from __future__ import annotations

from pathlib import Path

import pytest

from terrain.config import ModelsConfig
from terrain.config import load_models as _load
from terrain.errors import ConfigError
from terrain.property import declarations

REPO = Path(__file__).resolve().parents[2]


def load_models(path: Path) -> ModelsConfig:
    return _load(path, declarations())


VALID = """
models:
  a:
    source: synthetic:bert-tiny
    default: true
    expect:
      simplex_cv: {band: [0.1, 0.2]}
      q_sparsity: {threshold: 0.01, band: [0.0, 1.0]}
"""

INVALID = [
    pytest.param("", "the file is empty", id="empty-file"),
    pytest.param("- a\n- b\n", "expected a mapping with a 'models' key", id="not-a-mapping"),
    pytest.param(
        "modles: {}\n", "unknown top-level key 'modles' (did you mean 'models'?)", id="top-typo"
    ),
    pytest.param("models: {}\n", "'models' must be a non-empty mapping", id="no-models"),
    pytest.param(
        "models:\n  a: {source: x}\n  a: {source: y}\n",
        "models.yaml:3: duplicate key 'a' (first at line 2)",
        id="duplicate-model",
    ),
    pytest.param(
        "models:\n  a: {sorce: x}\n",
        "model 'a': unknown field 'sorce' (did you mean 'source'?)",
        id="unknown-field",
    ),
    pytest.param(
        "models:\n  a: {default: true}\n",
        "model 'a': field 'source': Field required",
        id="missing-source",
    ),
    pytest.param(
        "models:\n  a: {source: x, trust_remote_code: maybe}\n",
        "model 'a': field 'trust_remote_code': Input should be a valid boolean",
        id="wrong-type-bool",
    ),
    pytest.param(
        "models:\n  a: {source: x, dtype: float8}\n",
        "model 'a': field 'dtype': Input should be 'float32', 'float64', 'bfloat16' or 'float16'",
        id="wrong-dtype",
    ),
    pytest.param(
        "models:\n  a: {source: x, step: '1000'}\n",
        "model 'a': field 'step': Input should be a valid integer (got '1000')",
        id="step-a-string",
    ),
    pytest.param(
        "models:\n  a: {source: x, step: 2.5}\n",
        "model 'a': field 'step': Input should be a valid integer",
        id="step-not-whole",
    ),
    pytest.param(
        "models:\n  a: {source: x, step: -1}\n",
        "model 'a': field 'step': Input should be greater than or equal to 0",
        id="step-negative",
    ),
    pytest.param(
        "models:\n  a: {source: x, setp: 1}\n",
        "model 'a': unknown field 'setp' (did you mean 'step'?)",
        id="step-typo",
    ),
    pytest.param(
        "models:\n  a: {source: x, family: bret}\n",
        "model 'a': field 'family': unknown family 'bret' (did you mean 'bert'?)",
        id="unknown-family",
    ),
    pytest.param(
        "models:\n  a: {source: x, expect: {simplex_vc: {band: [0, 1]}}}\n",
        "model 'a': unknown property 'simplex_vc' under 'expect' (did you mean 'simplex_cv'?)",
        id="unknown-property",
    ),
    pytest.param(
        "models:\n  a: {source: x, expect: {simplex_cv: {band: [0.3, 0.2]}}}\n",
        "field 'expect.simplex_cv.band': band low end 0.3 is above its high end 0.2",
        id="band-reversed",
    ),
    pytest.param(
        "models:\n  a: {source: x, expect: {simplex_cv: {band: [0.3]}}}\n",
        "a band is a list of two numbers [low, high]",
        id="band-one-number",
    ),
    pytest.param(
        "models:\n  a: {source: x, expect: {q_sparsity: {band: [0, 1], threshold: 0.5}}}\n",
        "field 'expect.q_sparsity.threshold': threshold must be one of [0.0001, 0.001, 0.01, 0.1]",
        id="threshold-not-measured",
    ),
    pytest.param(
        "models:\n  a: {source: x, expect: {crosslayer_corr: {max_abs: high}}}\n",
        "field 'expect.crosslayer_corr.max_abs': Input should be a valid number",
        id="wrong-type-number",
    ),
    pytest.param(
        "models:\n  a: {source: x, expect: {simplex_cv: {band: [0, 1], n_simplexes: 10}}}\n",
        "unknown field 'expect.simplex_cv.n_simplexes' (did you mean 'n_simplices'?)",
        id="unknown-nested-field",
    ),
    pytest.param(
        "models:\n  a: [1, 2]\n", "model 'a': expected a mapping, got list", id="entry-not-mapping"
    ),
    pytest.param("models:\n  a: {source: [x\n", "not valid YAML", id="yaml-syntax"),
]


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_invalid_models_file_names_file_model_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_models(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  a: {sorce: x}\n  b: {source: y, family: gpt9}\n")
    with pytest.raises(ConfigError) as caught:
        load_models(path)
    assert "model 'a'" in str(caught.value)
    assert "model 'b'" in str(caught.value)


def test_valid_file_is_frozen_and_defaults_apply(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(VALID)
    spec = load_models(path).models["a"]
    assert spec.trust_remote_code is False
    simplex = spec.expectation("simplex_cv")
    assert simplex is not None
    assert getattr(simplex, "n_simplices") == 1000  # noqa: B009 (a declared subclass's field)
    assert spec.expectation("crosslayer_corr") is None  # its default bound applies
    with pytest.raises(Exception, match="frozen"):
        spec.source = "other"  # type: ignore[misc]


def test_a_step_is_an_optional_whole_number(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  a: {source: x, step: 2000}\n  b: {source: y}\n")
    models = load_models(path).models
    assert models["a"].step == 2000
    assert models["b"].step is None


def test_shipped_models_file_is_valid() -> None:
    config = load_models(REPO / "models.yaml")
    assert {"minilm", "t5-small", "t5-small-random", "bert-base-random"} <= set(config.models)
    simplex = config.models["t5-small"].expectation("simplex_cv")
    assert simplex is not None
    assert simplex.band is not None
    assert simplex.band.as_list() == [0.20, 0.23]
    assert all(m.is_synthetic for m in config.models.values() if m.name.endswith("-random"))
