"""A checkpoint folder: lazy config, tensors read from the safetensors mmap, a fingerprint.

Tensors stay in the memory map in their stored dtype (bf16, fp16, fp32 pages of the file,
shared by every worker through the page cache); only a conversion allocates, and callers
that stream convert one row chunk at a time (`row_chunks`). The shard map
(terrain/shards.py) is checked before anything is read, and `read_order` lists the tensors
file by file, front to back, so a streaming pass reads each shard once.

Dtype policy: float64/32/16 and bfloat16 are read as stored; float8 (E4M3, E5M2) is
upcast exactly to float32 (every float8 value is a float32 value), and the census says
so. Integer and boolean tensors are buffers (position ids, masks): reading one as a weight
is refused naming the tensor and its dtype (`check_float`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from terrain.architecture import check_config_fields
from terrain.errors import CheckpointError
from terrain.shards import INDEX_FILE, ShardMap, StoredTensor, check_regular, shard_map

__all__ = ["INDEX_FILE", "Checkpoint", "check_float", "non_finite_count"]

_FINGERPRINT_BLOCK = 8 << 20
_MAX_CONFIG_BYTES = 16 << 20
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16"})
FLOAT8_DTYPES = frozenset({"F8_E4M3", "F8_E5M2"})


def non_finite_count(t: torch.Tensor) -> int:
    """How many values of a floating-point tensor are NaN or ±Inf.

    A NaN or Inf anywhere makes the sum non-finite: one reduction instead of a mask the
    size of the tensor. Only a non-finite sum (or a finite-valued one that overflows) pays
    for the exact count.
    """
    if bool(torch.isfinite(t.sum())):
        return 0
    return int((~torch.isfinite(t)).sum())


def check_float(model: str, entry: StoredTensor) -> None:
    """Refuse to read a non-float tensor as a weight, naming it and its dtype."""
    if entry.dtype not in FLOAT_DTYPES | FLOAT8_DTYPES:
        raise CheckpointError(
            f"model {model!r}: tensor {entry.name!r} in {entry.file.name!r} is stored as "
            f"{entry.dtype}, not a floating-point type: it cannot be measured as a weight"
        )


class Checkpoint:
    """Read-only view of a Hugging Face model folder (config.json + *.safetensors)."""

    def __init__(self, path: Path, *, name: str) -> None:
        self.path = Path(path)
        self._name = name
        if not self.path.is_dir():
            raise CheckpointError(
                f"model {name!r}: checkpoint directory {str(self.path)!r} does not exist"
            )

    @property
    def name(self) -> str:
        return self._name

    @cached_property
    def config(self) -> dict[str, Any]:
        cfg_path = self.path / "config.json"
        if not cfg_path.exists() and not cfg_path.is_symlink():
            raise CheckpointError(f"model {self.name!r}: no config.json in {str(self.path)!r}")
        if cfg_path.is_symlink() and not cfg_path.resolve().is_relative_to(self.path.resolve()):
            raise CheckpointError(
                f"model {self.name!r}: {str(cfg_path)!r} is a symbolic link leaving the "
                "checkpoint folder"
            )
        check_regular(self.name, cfg_path)
        try:
            if cfg_path.stat().st_size > _MAX_CONFIG_BYTES:
                raise CheckpointError(
                    f"model {self.name!r}: {str(cfg_path)!r} is over "
                    f"{_MAX_CONFIG_BYTES >> 20} MiB, not a model config"
                )
            data = json.loads(cfg_path.read_bytes())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(
                f"model {self.name!r}: {str(cfg_path)!r} is not readable JSON: {e}"
            ) from None
        if not isinstance(data, dict):
            raise CheckpointError(f"model {self.name!r}: {str(cfg_path)!r} is not a JSON object")
        check_config_fields(f"model {self.name!r}: {str(cfg_path)!r}", data)
        return data

    @cached_property
    def shards(self) -> ShardMap:
        return shard_map(self.name, self.path)

    def _open(self, file: Path) -> Any:
        try:
            return safe_open(str(file), framework="pt")
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(
                f"model {self.name!r}: {str(file)!r} is not a readable safetensors file "
                f"(truncated or corrupt?): {e}"
            ) from None

    @cached_property
    def _handles(self) -> dict[Path, Any]:
        return {f: self._open(f) for f in self.shards.files}

    def tensor_names(self) -> list[str]:
        return sorted(self.shards.tensors)

    def read_order(self) -> list[str]:
        """Every tensor name, shard by shard and front to back within each shard."""
        return self.shards.in_read_order()

    def tensor_shapes(self) -> Mapping[str, tuple[int, ...]]:
        return self._shapes

    @cached_property
    def _shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: entry.shape for name, entry in self.shards.tensors.items()}

    def stored_dtype(self, name: str) -> str:
        """The safetensors dtype code a tensor is stored in ("BF16", "F32", ...)."""
        return self._entry(name).dtype

    def nbytes(self, name: str) -> int:
        """Bytes of the stored tensor."""
        entry = self._entry(name)
        return entry.numel * _ITEM_BYTES.get(entry.dtype, 4)

    def entry(self, name: str) -> StoredTensor:
        """Where a tensor is stored, its dtype and shape, as its file's header says."""
        return self._entry(name)

    def _entry(self, name: str) -> StoredTensor:
        entry = self.shards.tensors.get(name)
        if entry is None:
            raise CheckpointError(f"model {self.name!r}: no tensor {name!r} in the checkpoint")
        return entry

    def _stored(self, name: str) -> tuple[StoredTensor, Any]:
        entry = self._entry(name)
        return entry, self._handles[entry.file]

    def tensor(self, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """One tensor, converted to `dtype`; fails naming the tensor if it holds NaN or Inf."""
        entry = self._entry(name)
        if dtype.is_floating_point:
            check_float(self.name, entry)
        out = self._read(entry, name).to(dtype)
        self._check_finite(entry, out)
        return out

    def stored(self, name: str) -> torch.Tensor:
        """A float tensor as stored: a view of the memory map, no conversion, no copy (its
        values are checked when a measure converts them, chunk by chunk)."""
        entry = self._entry(name)
        check_float(self.name, entry)
        return self._read(entry, name)

    def _read(self, entry: StoredTensor, name: str) -> torch.Tensor:
        """The stored tensor from its file's handle; a read error names tensor and file."""
        try:
            raw: torch.Tensor = self._handles[entry.file].get_tensor(name)
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(
                f"model {self.name!r}: cannot read tensor {name!r} from {str(entry.file)!r}: {e}"
            ) from None
        return raw

    def rows(
        self, name: str, start: int, stop: int, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Rows [start, stop) of a tensor (elements of a 1-D one), converted to `dtype`."""
        entry, handle = self._stored(name)
        check_float(self.name, entry)
        try:
            raw: torch.Tensor = handle.get_slice(name)[start:stop]
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(
                f"model {self.name!r}: cannot read rows {start}:{stop} of tensor {name!r} "
                f"from {str(entry.file)!r}: {e}"
            ) from None
        out = raw.to(dtype)
        if non_finite_count(out):
            self._check_finite(entry, self.tensor(name, torch.float32))
        return out

    def row_chunks(
        self, name: str, max_bytes: int, dtype: torch.dtype = torch.float32
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """(first row, rows) chunks of a tensor, each at most `max_bytes` once converted
        (at least one row), in row order."""
        shape = self._entry(name).shape
        n_rows = shape[0] if shape else 1
        row_values = max(1, math.prod(shape[1:]))
        step = max(1, max_bytes // (row_values * torch.empty((), dtype=dtype).element_size()))
        for start in range(0, n_rows, step):
            yield start, self.rows(name, start, min(n_rows, start + step), dtype)

    def _check_finite(self, entry: StoredTensor, values: torch.Tensor) -> None:
        if not values.is_floating_point():
            return
        bad = non_finite_count(values)
        if bad:
            raise CheckpointError(
                f"model {self.name!r}: tensor {entry.name!r} in {entry.file.name!r} has {bad} "
                f"of {values.numel()} values that are NaN or Inf"
            )

    def dtype_census(self) -> dict[str, int]:
        """Stored tensors per dtype, with float8's exact upcast named."""
        counts: dict[str, int] = {}
        for entry in self.shards.tensors.values():
            key = entry.dtype
            if key in FLOAT8_DTYPES:
                key += " (upcast exactly to float32)"
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items()))

    @cached_property
    def fingerprint(self) -> str:
        """sha256 over config.json and every weight file's bytes, in name order."""
        digest = hashlib.sha256()
        for file in [self.path / "config.json", *sorted(self.shards.files)]:
            digest.update(file.name.encode())
            with file.open("rb") as fh:
                while block := fh.read(_FINGERPRINT_BLOCK):
                    digest.update(block)
        return digest.hexdigest()

    def validate(self) -> None:
        """Check the config, the shard map and every file's header now, so that a broken
        checkpoint fails before any measure runs."""
        _ = self.config
        _ = self.shards
        _ = self._handles


_ITEM_BYTES = {
    "F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2,
    "I16": 2, "U16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I8": 1, "U8": 1, "BOOL": 1,
}  # fmt: skip
