"""Hostile and broken inputs in one real run: every broken model fails alone with one line
naming it, the good models are still reported, nothing is unpickled or imported, and no
string from a model, config or tensor is live markup on either page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tests.plugin.harness import Harness, make_harness
from tests.plugin.live_markup import live
from tests.unit import bad_checkpoints as bad

MARKUP = {
    "name": "<i>m-name</i>",
    "description": "<script>desc()</script>",
    "source": "<u>src</u>",
    "config": "<b>arch</b>",
    "tensor": "<script>tensor()</script>",
}


@pytest.fixture
def harness(pytester: pytest.Pytester, replica_cache: Path) -> Harness:
    return make_harness(pytester, replica_cache)


def _folders(tiny_bert: Path, root: Path, outside: Path) -> dict[str, Path]:
    tensors = load_file(tiny_bert / "model.safetensors")
    config: dict[str, Any] = json.loads((tiny_bert / "config.json").read_text())
    builders: dict[str, tuple[str, bad.Builder]] = {
        "int8": ("int8", bad.with_q(lambda q: (q * 100).to(torch.int8))),
        "float8": ("float8", bad.with_q(lambda q: q.to(torch.float8_e4m3fn))),
        "outside-index": ("outside-index", bad.sharded(bad.index_absolute)),
        "pickle": ("pickle", bad.pickle_only),
        "remote-code": ("remote-code", bad.auto_map_code),
        "markup-config": ("markup-config", bad.config_of({"architectures": [MARKUP["config"]]})),
        "markup-tensor": (
            MARKUP["source"],
            lambda t, c, d, o: bad.write(
                d, {**t, f"{MARKUP['tensor']}.weight": t[bad.q_name(t)].clone()}, c
            ),
        ),
    }
    out = {}
    for model, (folder, build) in builders.items():
        build(tensors, config, root / folder, outside)
        out[model] = root / folder
    return out


def test_hostile_models_fail_alone_and_nothing_is_live_markup(
    harness: Harness, tiny_bert: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    folders = _folders(tiny_bert, harness.pytester.path / "ckpt", outside)
    entries = "".join(
        f"  {name}:\n    source: {json.dumps(str(path))}\n    default: true\n"
        for name, path in folders.items()
    )
    harness.models(
        f"models:\n  {json.dumps(MARKUP['name'])}:\n    source: synthetic:bert-tiny\n"
        f"    description: {json.dumps(MARKUP['description'])}\n    default: true\n" + entries
    )
    result = harness.run()
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output
    assert result.ret == 6
    doc = harness.findings()
    assert doc["verdict"]["status"] == "harness-error"
    measured = {f["model"] for f in doc["findings"]}
    assert measured == {MARKUP["name"], "float8"}, measured
    assert doc["models"]["float8"]["dtypes"]["F8_E4M3 (upcast exactly to float32)"] == 1
    expected = {
        "int8": ("query.weight", "I8"),
        "outside-index": ("outside the checkpoint folder",),
        "pickle": ("does not unpickle",),
        "remote-code": ("'EvilModel'", "not a model class"),
        "markup-config": (MARKUP["config"],),
        "markup-tensor": (MARKUP["tensor"],),
    }
    for model, fragments in expected.items():
        messages = [e["message"] for e in doc["errors"] if e["model"] == model]
        assert messages, model
        for message in messages:  # one line each, naming the model and what is wrong
            assert f"model {model!r}" in message, message
            assert all(f in message for f in fragments), (fragments, message)
    assert not (outside / "UNPICKLED").exists()
    assert not (outside / "IMPORTED").exists()
    pages = {"index.html": harness.page(), "tests.html": harness.test_log()}
    for page_name, page in pages.items():
        for where, markup in MARKUP.items():
            if where == "description" and page_name == "tests.html":
                continue  # pytest-html's page shows no descriptions
            assert not live(page, markup), (page_name, where)
    assert "&lt;i&gt;m-name&lt;/i&gt;" in pages["index.html"]
    assert "&lt;script&gt;tensor()&lt;/script&gt;" in pages["index.html"]
