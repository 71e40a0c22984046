"""models.yaml as an attacker or a careless hand writes it: each row is refused within a
second with one bounded message naming the file (and the model and field where there is
one), never accepted and never a traceback."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from terrain.config import MAX_MESSAGE, load_models, read_yaml
from terrain.errors import ConfigError
from terrain.property import declarations


def _laughs(levels: int) -> bytes:
    """The "billion laughs": each level names the previous one nine times."""
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    lines.append(f"models: {{m: {{source: x, description: *a{levels}}}}}")
    return "\n".join(lines).encode()


def _entry(field: str) -> bytes:
    return f"models:\n  m:\n    source: synthetic:bert-tiny\n    {field}\n".encode()


ROWS = [
    pytest.param(_laughs(9), "YAML anchors (&a0) are not allowed", id="billion-laughs"),
    pytest.param(b'models:\n  m: {source: "\xff\xfe"}\n', "not UTF-8 text", id="not-utf8"),
    pytest.param("models: {m: {source: x}}".encode("utf-16"), "not UTF-8", id="utf16"),
    pytest.param(b"#" * ((1 << 20) + 1), "too large for a models file", id="over-1MiB"),
    pytest.param(b"models: " + b"[" * 5000 + b"]" * 5000, "nested deeper", id="deep-nesting"),
    pytest.param(b"models: !!python/object/apply:os.system [ls]", "not valid YAML", id="tag"),
    pytest.param(_entry("expect: {simplex_cv: {band: [.nan, 1]}}"), "finite", id="band-nan"),
    pytest.param(_entry("expect: {simplex_cv: {band: [0, .inf]}}"), "finite", id="band-inf"),
    pytest.param(
        _entry("expect: {q_sparsity: {band: [-0.5, 0.2]}}"),
        "field 'expect.q_sparsity.band': a fraction lies in [0, 1]",
        id="fraction-below-0",
    ),
    pytest.param(
        _entry("expect: {q_sparsity: {band: [0.5, 1.5]}}"),
        "a fraction lies in [0, 1]",
        id="fraction-above-1",
    ),
    pytest.param(
        _entry("expect: {simplex_cv: {band: [-0.5, 0.2]}}"),
        "field 'expect.simplex_cv.band': a non-negative quantity",
        id="cv-below-0",
    ),
    pytest.param(
        _entry("expect: {embedding_mean_cosine: {band: [-2, 0.2]}}"),
        "a cosine or correlation lies in [-1, 1]",
        id="cosine-below-minus-1",
    ),
    pytest.param(
        _entry("expect: {simplex_cv: {band: [true, true]}}"), "valid number", id="band-bools"
    ),
    pytest.param(
        _entry("tolerances: {simplex_cv: {abs: .nan}}"), "finite number", id="tolerance-nan"
    ),
    pytest.param(_entry('trust_remote_code: "yes"'), "'trust_remote_code'", id="trust-yes"),
    pytest.param(_entry('trust_remote_code: "on"'), "'trust_remote_code'", id="trust-on-quoted"),
    pytest.param(_entry("trust_remote_code: on"), "'trust_remote_code'", id="trust-on-yaml11"),
    pytest.param(_entry("trust_remote_code: yes"), "'trust_remote_code'", id="trust-yes-yaml11"),
    pytest.param(_entry('trust_remote_code: "1"'), "'trust_remote_code'", id="trust-1-string"),
    pytest.param(_entry("trust_remote_code: 1"), "'trust_remote_code'", id="trust-1"),
    pytest.param(_entry("default: y"), "'default'", id="default-y"),
    pytest.param(
        b"models:\n  m: {source: " + b"x" * 200_000 + b"}\n", "at most 4096", id="long-value"
    ),
    pytest.param(
        b"models:\n  m: {source: x, " + b"k" * 200_000 + b": 1}\n", "not valid YAML", id="long-key"
    ),
]


@pytest.mark.parametrize(("data", "message"), ROWS)
def test_hostile_models_file_is_refused_in_a_bounded_line(
    data: bytes, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "models.yaml"
    path.write_bytes(data)
    start = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        load_models(path, declarations())
    elapsed = time.perf_counter() - start
    text = str(caught.value)
    assert message in text, text[:400]
    assert str(path) in text
    assert len(text) <= MAX_MESSAGE, len(text)
    assert elapsed < 2.0, elapsed


def test_a_fifo_models_file_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    os.mkfifo(path)
    with pytest.raises(ConfigError, match="not a regular file"):
        read_yaml(path)


def test_true_and_false_are_still_booleans(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_bytes(_entry("trust_remote_code: true") + b"    default: False\n")
    spec = load_models(path, declarations()).models["m"]
    assert spec.trust_remote_code is True
    assert spec.default is False
