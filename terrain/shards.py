"""Which safetensors file holds which tensor: a checkpoint folder's shard map, checked.

A folder holds one `model.safetensors`, several `*.safetensors` files, or shards listed by
`model.safetensors.index.json` (`weight_map`: tensor name -> file name), as
`save_pretrained` writes them. The map is trusted for nothing: every file it names must be
a plain file name inside the folder (no absolute path, no `..`, no symbolic link leaving
the folder), must exist, and must hold the tensors it is said to hold; a tensor named
twice, in the index or in two files, is refused rather than letting one copy win
silently. Every refusal is one line naming the model, the file and the tensor.

The read order is the shards' order (file name order, which is index order for
`model-0000k-of-0000n` names), and within a shard the order of the tensors' bytes, so
that a streaming pass reads each file front to back once.
"""

from __future__ import annotations

import json
import math
import stat
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from terrain.errors import CheckpointError

INDEX_FILE = "model.safetensors.index.json"
# A safetensors header is an 8-byte little-endian length, then that many bytes of JSON.
# Real headers are a few MB at most; a larger declared length is a corrupt or hostile file.
_MAX_HEADER_BYTES = 100 << 20
_MAX_INDEX_BYTES = 64 << 20


@dataclass(frozen=True)
class StoredTensor:
    """Where one tensor's bytes are, as its file's header declares them."""

    name: str
    file: Path
    dtype: str  # safetensors dtype code: "BF16", "F32", "F8_E4M3", "I64", ...
    shape: tuple[int, ...]
    offset: int  # first byte within the data section

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class ShardMap:
    """Every tensor of a checkpoint folder, in read order."""

    tensors: Mapping[str, StoredTensor]  # insertion order is the read order
    files: tuple[Path, ...]  # in read order
    indexed: bool  # through model.safetensors.index.json

    def in_read_order(self) -> list[str]:
        return list(self.tensors)


def read_header(model: str, file: Path) -> dict[str, Any]:
    """The JSON header of one safetensors file, with its declared length checked."""
    check_regular(model, file)
    try:
        with file.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise CheckpointError(
                    f"model {model!r}: {str(file)!r} is not a readable safetensors file "
                    f"(truncated or corrupt?): {len(head)} bytes, shorter than a header"
                )
            (length,) = struct.unpack("<Q", head)
            size = file.stat().st_size
            if length > _MAX_HEADER_BYTES or 8 + length > size:
                raise CheckpointError(
                    f"model {model!r}: {str(file)!r} is not a readable safetensors file "
                    f"(truncated or corrupt?): its header claims {length} bytes of a "
                    f"{size}-byte file"
                )
            header = json.loads(fh.read(length))
    except OSError as e:
        raise CheckpointError(f"model {model!r}: cannot read {str(file)!r}: {e.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(
            f"model {model!r}: {str(file)!r} is not a readable safetensors file "
            "(truncated or corrupt?): its header is not JSON"
        ) from None
    if not isinstance(header, dict):
        raise CheckpointError(
            f"model {model!r}: {str(file)!r} is not a readable safetensors file: its header "
            "is not a JSON object"
        )
    return header


def _entries(model: str, file: Path, header: Mapping[str, Any]) -> list[StoredTensor]:
    out = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = str(info["dtype"])
            shape = tuple(int(s) for s in info["shape"])
            begin = int(info["data_offsets"][0])
        except (KeyError, TypeError, ValueError, IndexError):
            raise CheckpointError(
                f"model {model!r}: {str(file)!r}: the header entry of tensor {name!r} has no "
                "dtype, shape and data_offsets"
            ) from None
        out.append(StoredTensor(str(name), file, dtype, shape, begin))
    out.sort(key=lambda t: t.offset)
    return out


def _inside(model: str, folder: Path, name: object, where: str) -> Path:
    """A shard file named by the index, refused unless it is a plain file in the folder."""
    if not isinstance(name, str) or not name:
        raise CheckpointError(f"model {model!r}: {where} names shard {name!r}, not a file name")
    candidate = Path(name)
    if candidate.is_absolute() or ".." in candidate.parts or len(candidate.parts) != 1:
        raise CheckpointError(
            f"model {model!r}: {where} names shard {name!r} outside the checkpoint folder; "
            "shards must be plain file names beside the index"
        )
    path = folder / candidate
    if path.is_symlink() and not path.resolve().is_relative_to(folder.resolve()):
        raise CheckpointError(
            f"model {model!r}: shard {name!r} is a symbolic link leaving the checkpoint folder"
        )
    return path


def check_regular(model: str, path: Path) -> None:
    """Refuse a pipe, a device or a folder where a file is read: opening a FIFO blocks until
    a writer comes, and /dev/zero never ends."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise CheckpointError(f"model {model!r}: cannot read {str(path)!r}: {e.strerror}") from None
    if not stat.S_ISREG(mode):
        raise CheckpointError(
            f"model {model!r}: {str(path)!r} is not a regular file (a pipe, a device or a folder)"
        )


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKeyError(key)
        seen[key] = value
    return seen


class _DuplicateKeyError(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _weight_map(model: str, index: Path) -> dict[str, str]:
    check_regular(model, index)
    try:
        if index.stat().st_size > _MAX_INDEX_BYTES:
            raise CheckpointError(
                f"model {model!r}: {str(index)!r} is over {_MAX_INDEX_BYTES >> 20} MiB, "
                "not an index"
            )
        document = json.loads(index.read_bytes(), object_pairs_hook=_refuse_duplicates)
    except _DuplicateKeyError as e:
        raise CheckpointError(
            f"model {model!r}: {str(index)!r} names tensor {e.key!r} twice in its weight_map"
        ) from None
    except OSError as e:
        raise CheckpointError(
            f"model {model!r}: cannot read {str(index)!r}: {e.strerror}"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"model {model!r}: {str(index)!r} is not JSON: {e}") from None
    weight_map = document.get("weight_map") if isinstance(document, dict) else None
    if not isinstance(weight_map, dict):
        raise CheckpointError(
            f"model {model!r}: {str(index)!r} has no weight_map object (tensor name -> file)"
        )
    return weight_map


def shard_map(model: str, folder: Path) -> ShardMap:
    """The checked map of every tensor in `folder` (see the module docstring)."""
    index = folder / INDEX_FILE
    if index.exists() or index.is_symlink():
        _inside(model, folder, INDEX_FILE, "the folder")
        return _indexed(model, folder, index)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        pickled = sorted(p.name for p in folder.glob("*.bin"))
        hint = (
            f"; found {pickled} (pickle): convert to safetensors, terrain does not unpickle"
            if pickled
            else ""
        )
        raise CheckpointError(f"model {model!r}: no *.safetensors weights in {str(folder)!r}{hint}")
    for f in files:
        _inside(model, folder, f.name, "the folder")
    tensors: dict[str, StoredTensor] = {}
    for f in files:
        tensors.update((e.name, e) for e in _unclashed(model, f, tensors))
    return ShardMap(tensors, tuple(files), indexed=False)


def _unclashed(model: str, path: Path, tensors: dict[str, StoredTensor]) -> list[StoredTensor]:
    """The tensors of one weight file; a name already in `tensors` is an error."""
    entries = _entries(model, path, read_header(model, path))
    for entry in entries:
        if entry.name in tensors:
            raise CheckpointError(
                f"model {model!r}: tensor {entry.name!r} is stored in both "
                f"{tensors[entry.name].file.name!r} and {path.name!r}"
            )
    return entries


def _indexed(model: str, folder: Path, index: Path) -> ShardMap:
    weight_map = _weight_map(model, index)
    where = f"{INDEX_FILE}"
    by_file: dict[Path, list[str]] = {}
    for name, file in weight_map.items():
        path = _inside(model, folder, file, f"{where} (tensor {name!r})")
        by_file.setdefault(path, []).append(str(name))
    files = sorted(by_file)
    for path in files:
        if not path.is_file():
            first = by_file[path][0]
            raise CheckpointError(
                f"model {model!r}: shard {path.name!r} named in {where} for tensor {first!r} "
                "(and others) does not exist"
            )
    stray = sorted(set(folder.glob("*.safetensors")) - set(files))
    tensors: dict[str, StoredTensor] = {}
    for path in files:
        entries = {e.name: e for e in _entries(model, path, read_header(model, path))}
        for name in by_file[path]:
            if name not in entries:
                raise CheckpointError(
                    f"model {model!r}: {where} says tensor {name!r} is in {path.name!r}, "
                    "which does not hold it"
                )
        for entry in sorted(entries.values(), key=lambda e: e.offset):
            owner = weight_map.get(entry.name)
            if owner is None:
                continue  # stored but not indexed: transformers ignores it too
            if Path(str(owner)).name != path.name:
                raise CheckpointError(
                    f"model {model!r}: tensor {entry.name!r} is stored in both {path.name!r} "
                    f"and {str(owner)!r}"
                )
            tensors[entry.name] = entry
    for path in stray:  # not indexed, so not loaded; a name clash is still an error
        _unclashed(model, path, tensors)
    return ShardMap(tensors, tuple(files), indexed=True)
