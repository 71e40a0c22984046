"""Opening a GGUF file: which file, a memory-mapped reader that names the broken tensor, metadata.

`gguf.GGUFReader` maps the file and builds one numpy view per tensor while it opens. A
truncated file or a tensor type it does not know makes that fail with a bare numpy or enum
error that names neither the tensor nor its type; `_BoundedReader` checks every tensor's
type and byte range first, so the CheckpointError can name both. It hooks the reader's
`_build_tensors(start_offs, fields)` (gguf 0.19); the truncation tests fail if that moves.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader
from gguf.gguf_reader import ReaderField
from gguf.quants import dequantize

from terrain.errors import CheckpointError

SUFFIX = ".gguf"

# Stored as plain numbers: read as they are, never handed to gguf.quants.dequantize.
PLAIN_TYPES = frozenset(
    {
        GGMLQuantizationType.F64,
        GGMLQuantizationType.I8,
        GGMLQuantizationType.I16,
        GGMLQuantizationType.I32,
        GGMLQuantizationType.I64,
    }
)


def one_line(error: BaseException) -> str:
    """An exception's text on one line (library messages may span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def find_gguf_file(path: Path, model: str) -> Path:
    """The .gguf file itself, or the only one in a folder; anything else fails naming the fix."""
    if path.is_file():
        if path.suffix != SUFFIX:
            raise CheckpointError(f"model {model!r}: {str(path)!r} is not a {SUFFIX} file")
        return path
    if not path.is_dir():
        raise CheckpointError(f"model {model!r}: GGUF checkpoint {str(path)!r} does not exist")
    found = sorted(path.glob(f"*{SUFFIX}"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise CheckpointError(f"model {model!r}: no {SUFFIX} file in {str(path)!r}")
    names = [f.name for f in found]
    raise CheckpointError(
        f"model {model!r}: {str(path)!r} holds {len(found)} {SUFFIX} files {names}; "
        "give the file itself (split GGUF files are not supported)"
    )


class _BadTensorError(Exception):
    """A tensor the reader cannot map, with what is wrong with it."""

    def __init__(self, tensor: str, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.tensor, self.kind, self.detail = tensor, kind, detail


class _BoundedReader(GGUFReader):
    """GGUFReader that checks each tensor's type and extent before mapping it."""

    def _build_tensors(self, start_offs: int, fields: list[ReaderField]) -> None:
        size = int(self.data.shape[0])
        for field in fields:
            _name_len, _name, _n_dims, dims, raw_dtype, offset = field.parts
            raw = int(raw_dtype[0])
            try:
                qtype = GGMLQuantizationType(raw)
            except ValueError:
                raise _BadTensorError(field.name, f"type id {raw}", "unknown to gguf") from None
            block, type_size = GGML_QUANT_SIZES[qtype]
            n_bytes = int(np.prod(dims)) * type_size // block
            end = start_offs + int(offset[0]) + n_bytes
            if end > size:
                raise _BadTensorError(
                    field.name,
                    qtype.name,
                    f"needs bytes up to {end} but the file has {size} (truncated)",
                )
        super()._build_tensors(start_offs, fields)


def open_reader(file: Path, model: str) -> GGUFReader:
    """The file's reader (memory-mapped, read-only); one CheckpointError line on any fault."""
    try:
        return _BoundedReader(file, "r")
    except _BadTensorError as fault:
        raise CheckpointError(
            f"model {model!r}: GGUF file {str(file)!r}: tensor {fault.tensor!r} "
            f"({fault.kind}) {fault.detail}"
        ) from None
    except (ValueError, KeyError, IndexError, OSError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"model {model!r}: {str(file)!r} is not a readable GGUF file "
            f"(truncated or corrupt?): {one_line(e)}"
        ) from None


def field_value(reader: GGUFReader, key: str) -> Any:
    """A metadata value as Python (str, int, float, bool or list); None when absent."""
    found = reader.get_field(key)
    return None if found is None else found.contents()


def array_length(reader: GGUFReader, key: str) -> int | None:
    """How many items an array field holds, without decoding them (e.g. the token list)."""
    found = reader.get_field(key)
    return None if found is None else len(found.data)


@cache
def can_dequantize(qtype: GGMLQuantizationType) -> bool:
    """Whether this gguf release dequantizes the type: one zero block is tried, once per type."""
    if qtype in PLAIN_TYPES:
        return True
    _block, type_size = GGML_QUANT_SIZES[qtype]
    try:
        dequantize(np.zeros((1, type_size), dtype=np.uint8), qtype)
    except NotImplementedError:
        return False
    return True
