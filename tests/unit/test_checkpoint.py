"""Checkpoint reading: bad files fail with the model, file and tensor named."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from terrain.checkpoint import Checkpoint
from terrain.errors import CheckpointError


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(
        CheckpointError, match=r"model 'm': checkpoint directory .*nope.* does not exist"
    ):
        Checkpoint(tmp_path / "nope", name="m")


def test_directory_without_weights(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"model 'm': no \*\.safetensors weights in"):
        Checkpoint(tmp_path, name="m").validate()


def test_pickled_weights_are_refused_with_a_hint(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(CheckpointError, match=r"found \['pytorch_model\.bin'\] \(pickle\)"):
        Checkpoint(tmp_path, name="m").validate()


def test_missing_config(tmp_path: Path) -> None:
    save_file({"w": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"model 'm': no config\.json"):
        Checkpoint(tmp_path, name="m").validate()


@pytest.mark.parametrize("keep", [0.5, 0.999], ids=["half", "last-bytes"])
def test_truncated_safetensors(bert_copy: Path, keep: float) -> None:
    file = bert_copy / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(
        CheckpointError, match=r"model 'm': .*model\.safetensors.* not a readable safetensors file"
    ):
        Checkpoint(bert_copy, name="m").validate()


def test_nan_tensor_is_named(tmp_path: Path) -> None:
    bad = torch.ones(4, 4)
    bad[1, 2] = math.nan
    bad[3, 3] = math.inf
    save_file({"good": torch.ones(2), "bad": bad}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text("{}")
    ckpt = Checkpoint(tmp_path, name="m")
    assert torch.equal(ckpt.tensor("good"), torch.ones(2))
    with pytest.raises(
        CheckpointError,
        match=r"tensor 'bad' in 'model.safetensors' has 2 of 16 values that are NaN or Inf",
    ):
        ckpt.tensor("bad")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_one_non_finite_value_in_a_large_tensor_is_found(tmp_path: Path, bad: float) -> None:
    values = torch.randn(512, 512)
    values[511, 0] = bad
    save_file({"w": values}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"tensor 'w' .* has 1 of 262144 values"):
        Checkpoint(tmp_path, name="m").tensor("w")


def test_finite_values_whose_sum_overflows_are_accepted(tmp_path: Path) -> None:
    # float16 sums overflow above 65504: the quick check must fall back to the exact one.
    big = torch.full((8,), 60000.0, dtype=torch.float16)
    save_file({"w": big}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text("{}")
    read = Checkpoint(tmp_path, name="m").tensor("w", torch.float16)
    assert not bool(torch.isfinite(read.sum()))
    assert torch.equal(read, big)


def test_sharded_checkpoint_reads_through_the_index(tmp_path: Path) -> None:
    save_file({"a": torch.zeros(2)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({"b": torch.ones(3)}, str(tmp_path / "model-00002-of-00002.safetensors"))
    index = {
        "weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00002-of-00002.safetensors",
        }
    }
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "config.json").write_text("{}")
    ckpt = Checkpoint(tmp_path, name="m")
    assert ckpt.tensor_shapes() == {"a": (2,), "b": (3,)}
    assert torch.equal(ckpt.tensor("b"), torch.ones(3))


def test_fingerprint_follows_content(bert_copy: Path, tiny_bert: Path) -> None:
    original = Checkpoint(tiny_bert, name="a").fingerprint
    assert Checkpoint(bert_copy, name="b").fingerprint == original
    ckpt = Checkpoint(bert_copy, name="b")
    tensors = {n: ckpt.tensor(n) for n in ckpt.tensor_names()}
    tensors["embeddings.word_embeddings.weight"][0, 0] += 1.0
    save_file(tensors, str(bert_copy / "model.safetensors"))
    assert Checkpoint(bert_copy, name="b").fingerprint != original


def test_unknown_tensor_name(tiny_bert: Path) -> None:
    with pytest.raises(CheckpointError, match="model 'm': no tensor 'nope'"):
        Checkpoint(tiny_bert, name="m").tensor("nope")


def test_module_with_a_nan_parameter_is_refused_naming_it(bert_copy: Path) -> None:
    from safetensors.torch import load_file

    from terrain.modules import build_module

    tensors = load_file(str(bert_copy / "model.safetensors"))
    tensors["encoder.layer.0.output.dense.weight"][0, 0] = math.nan
    save_file(tensors, str(bert_copy / "model.safetensors"))
    with pytest.raises(
        CheckpointError,
        match=r"module parameter '.*encoder\.layer\.0\.output\.dense\.weight' has 1 of",
    ):
        build_module(
            Checkpoint(bert_copy, name="m"), dtype="float32", device="cpu", trust_remote_code=False
        )


def _sharded(folder: Path, shards: dict[str, dict[str, torch.Tensor]], index: object) -> None:
    for file, tensors in shards.items():
        save_file(tensors, str(folder / file))
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "config.json").write_text("{}")


def test_a_shard_named_in_the_index_but_missing_fails_naming_it(tmp_path: Path) -> None:
    _sharded(
        tmp_path,
        {"model-00001-of-00002.safetensors": {"a": torch.zeros(2)}},
        {
            "weight_map": {
                "a": "model-00001-of-00002.safetensors",
                "b": "model-00002-of-00002.safetensors",
            }
        },
    )
    with pytest.raises(
        CheckpointError,
        match=r"shard 'model-00002-of-00002.safetensors' named in model.safetensors.index.json "
        r"for tensor 'b' \(and others\) does not exist",
    ):
        Checkpoint(tmp_path, name="m").validate()


def test_a_tensor_stored_in_two_shards_is_refused(tmp_path: Path) -> None:
    _sharded(
        tmp_path,
        {
            "model-00001-of-00002.safetensors": {"a": torch.zeros(2)},
            "model-00002-of-00002.safetensors": {"a": torch.ones(2), "b": torch.ones(3)},
        },
        {
            "weight_map": {
                "a": "model-00001-of-00002.safetensors",
                "b": "model-00002-of-00002.safetensors",
            }
        },
    )
    with pytest.raises(
        CheckpointError,
        match=r"tensor 'a' is stored in both 'model-00002-of-00002.safetensors' and "
        r"'model-00001-of-00002.safetensors'",
    ):
        Checkpoint(tmp_path, name="m").validate()


def test_a_stray_file_repeating_an_indexed_tensor_is_refused(tmp_path: Path) -> None:
    _sharded(
        tmp_path,
        {"model-00001-of-00001.safetensors": {"a": torch.zeros(2)}},
        {"weight_map": {"a": "model-00001-of-00001.safetensors"}},
    )
    save_file({"a": torch.ones(2)}, str(tmp_path / "extra.safetensors"))
    with pytest.raises(
        CheckpointError,
        match=r"tensor 'a' is stored in both 'model-00001-of-00001.safetensors' and "
        r"'extra.safetensors'",
    ):
        Checkpoint(tmp_path, name="m").validate()


def test_a_tensor_in_two_unindexed_files_is_refused(tmp_path: Path) -> None:
    save_file({"a": torch.zeros(2)}, str(tmp_path / "one.safetensors"))
    save_file({"a": torch.ones(2)}, str(tmp_path / "two.safetensors"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(
        CheckpointError,
        match=r"tensor 'a' is stored in both 'one.safetensors' and 'two.safetensors'",
    ):
        Checkpoint(tmp_path, name="m").validate()


def test_a_tensor_named_twice_in_the_index_is_refused(tmp_path: Path) -> None:
    save_file({"a": torch.zeros(2)}, str(tmp_path / "s1.safetensors"))
    (tmp_path / "model.safetensors.index.json").write_text(
        '{"weight_map": {"a": "s1.safetensors", "a": "s1.safetensors"}}'
    )
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"names tensor 'a' twice in its weight_map"):
        Checkpoint(tmp_path, name="m").validate()


@pytest.mark.parametrize(
    "shard",
    ["/etc/passwd", "../outside.safetensors", "sub/dir.safetensors"],
    ids=["absolute", "parent", "subfolder"],
)
def test_an_index_pointing_outside_the_folder_is_refused(tmp_path: Path, shard: str) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    save_file({"a": torch.zeros(2)}, str(tmp_path / "outside.safetensors"))
    _sharded(folder, {}, {"weight_map": {"a": shard}})
    with pytest.raises(
        CheckpointError, match=r"names shard .* outside the checkpoint folder.*plain file names"
    ):
        Checkpoint(folder, name="m").validate()


def test_a_shard_symlink_leaving_the_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    save_file({"a": torch.zeros(2)}, str(tmp_path / "outside.safetensors"))
    (folder / "s1.safetensors").symlink_to(tmp_path / "outside.safetensors")
    _sharded(folder, {}, {"weight_map": {"a": "s1.safetensors"}})
    with pytest.raises(CheckpointError, match=r"symbolic link leaving the checkpoint folder"):
        Checkpoint(folder, name="m").validate()


@pytest.mark.parametrize(
    ("index", "message"),
    [
        ({"weight_map": ["a"]}, "has no weight_map object"),
        ({"metadata": {}}, "has no weight_map object"),
        ({"weight_map": {"a": 3}}, "names shard 3, not a file name"),
    ],
    ids=["list", "missing", "not-a-name"],
)
def test_malformed_weight_maps_fail_in_one_line(
    tmp_path: Path, index: object, message: str
) -> None:
    _sharded(tmp_path, {}, index)
    with pytest.raises(CheckpointError, match=message):
        Checkpoint(tmp_path, name="m").validate()


def test_an_index_naming_a_tensor_its_shard_lacks_fails_naming_both(tmp_path: Path) -> None:
    _sharded(
        tmp_path,
        {"s1.safetensors": {"a": torch.zeros(2)}},
        {"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors"}},
    )
    with pytest.raises(
        CheckpointError, match=r"says tensor 'b' is in 's1.safetensors', which does not hold it"
    ):
        Checkpoint(tmp_path, name="m").validate()


def test_shards_are_read_in_index_order_front_to_back(tmp_path: Path) -> None:
    _sharded(
        tmp_path,
        {
            "model-00002-of-00002.safetensors": {"z": torch.zeros(4), "c": torch.zeros(2)},
            "model-00001-of-00002.safetensors": {"y": torch.zeros(3), "b": torch.zeros(5)},
        },
        {
            "weight_map": {
                "z": "model-00002-of-00002.safetensors",
                "y": "model-00001-of-00002.safetensors",
                "c": "model-00002-of-00002.safetensors",
                "b": "model-00001-of-00002.safetensors",
            }
        },
    )
    ckpt = Checkpoint(tmp_path, name="m")
    order = ckpt.read_order()
    first = [n for n in order if n in ("b", "y")]
    assert order[:2] == first  # shard 1 first
    for names in (order[:2], order[2:]):
        offsets = [ckpt.shards.tensors[n].offset for n in names]
        assert offsets == sorted(offsets)  # front to back within a shard


def test_a_header_claiming_more_bytes_than_the_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes((10**9).to_bytes(8, "little") + b"{}")
    with pytest.raises(CheckpointError, match=r"its header claims 1000000000 bytes of a 10-byte"):
        Checkpoint(tmp_path, name="m").validate()


@pytest.mark.parametrize(
    ("dtype", "stored"),
    [(torch.int8, "I8"), (torch.bool, "BOOL"), (torch.int64, "I64")],
    ids=["int8", "bool", "int64"],
)
def test_integer_and_boolean_tensors_are_refused_as_weights(
    tmp_path: Path, dtype: torch.dtype, stored: str
) -> None:
    save_file({"w": torch.ones(2, 2, dtype=dtype)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text("{}")
    ckpt = Checkpoint(tmp_path, name="m")
    with pytest.raises(
        CheckpointError, match=rf"tensor 'w' in 'model.safetensors' is stored as {stored}, not a "
    ):
        ckpt.tensor("w")
    with pytest.raises(CheckpointError, match="cannot be measured as a weight"):
        ckpt.stored("w")


def test_float8_weights_are_upcast_exactly_and_named_in_the_census(tmp_path: Path) -> None:
    values = torch.tensor([0.5, -1.25, 448.0, 0.0]).to(torch.float8_e4m3fn)
    save_file({"w": values}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text("{}")
    ckpt = Checkpoint(tmp_path, name="m")
    assert ckpt.tensor("w").tolist() == [0.5, -1.25, 448.0, 0.0]
    assert ckpt.dtype_census() == {"F8_E4M3 (upcast exactly to float32)": 1}


def test_row_chunks_cover_the_tensor_and_convert_each_chunk(tmp_path: Path) -> None:
    values = torch.randn(37, 8).to(torch.bfloat16)
    save_file({"w": values}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text("{}")
    ckpt = Checkpoint(tmp_path, name="m")
    chunks = list(ckpt.row_chunks("w", max_bytes=10 * 8 * 4))
    assert [start for start, _ in chunks] == [0, 10, 20, 30]
    assert all(c.dtype == torch.float32 for _, c in chunks)
    assert torch.equal(torch.cat([c for _, c in chunks]), values.float())
    assert ckpt.stored("w").dtype == torch.bfloat16  # as stored: no conversion


def test_a_non_finite_value_in_a_row_chunk_is_named_with_the_whole_count(tmp_path: Path) -> None:
    values = torch.ones(20, 4)
    values[15, 1] = math.nan
    values[2, 0] = math.inf
    save_file({"w": values}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"tensor 'w' .* has 2 of 80 values"):
        Checkpoint(tmp_path, name="m").rows("w", 10, 20)
