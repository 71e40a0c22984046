"""A GGUF checkpoint behind terrain.checkpoint.Checkpoint's interface.

The file is memory-mapped by gguf's reader; a tensor is dequantized (gguf.quants.dequantize)
only when asked for, one at a time, so reading a 70B Q4 file holds one tensor in float32,
never the model. Tensors are exposed under their Hugging Face names, in nn.Linear's
(out, in) orientation and, for the llama architecture, with the converter's Q/K row
permutation undone (terrain/gguf/rope_layout.py): the anatomy adapters map them as they map
a transformers folder. GGUF tensors with no transformers counterpart are not exposed; they
are listed in `unmapped` with the reason.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGUFReader, Keys
from gguf.gguf_reader import ReaderTensor
from gguf.quants import dequantize

from terrain.checkpoint import non_finite_count
from terrain.errors import CheckpointError
from terrain.gguf.hf_config import hf_config
from terrain.gguf.names import ARCHITECTURES, Architecture, NameMapping, map_names
from terrain.gguf.reader import (
    PLAIN_TYPES,
    can_dequantize,
    field_value,
    find_gguf_file,
    one_line,
    open_reader,
)
from terrain.gguf.rope_layout import unpermute_rows

_FINGERPRINT_BLOCK = 1 << 20


class GGUFCheckpoint:
    """Read-only view of one .gguf file (given itself, or as the folder holding only it).

    `path` is the folder, as for Checkpoint (transformers loads `path` with `gguf_file=`);
    `file` is the .gguf file.
    """

    def __init__(self, path: Path, *, name: str) -> None:
        self._name = name
        self.file = find_gguf_file(Path(path), name)
        self.path = self.file.parent

    @property
    def name(self) -> str:
        return self._name

    @property
    def _where(self) -> str:
        return f"model {self.name!r}: GGUF file {str(self.file)!r}"

    @cached_property
    def _reader(self) -> GGUFReader:
        return open_reader(self.file, self.name)

    @cached_property
    def architecture(self) -> Architecture:
        """The file's general.architecture, if terrain maps it (llama, qwen2, qwen3)."""
        arch = field_value(self._reader, Keys.General.ARCHITECTURE)
        found = ARCHITECTURES.get(arch) if isinstance(arch, str) else None
        if found is None:
            raise CheckpointError(
                f"{self._where}: architecture {arch!r} is not supported "
                f"(terrain reads {', '.join(sorted(ARCHITECTURES))})"
            )
        return found

    def metadata(self, key: str) -> Any:
        """One metadata value ("tokenizer.ggml.model", "llama.block_count", ...); None if absent."""
        return field_value(self._reader, key)

    @cached_property
    def _stored(self) -> dict[str, ReaderTensor]:
        return {t.name: t for t in self._reader.tensors}

    @cached_property
    def config(self) -> dict[str, Any]:
        """The Hugging Face config dict rebuilt from the metadata (terrain/gguf/hf_config.py)."""
        return hf_config(self._reader, self.architecture, self._stored, self._where)

    @cached_property
    def _mapping(self) -> NameMapping:
        layers = int(self.config["num_hidden_layers"])
        return map_names(self.architecture, layers, self._stored)

    @property
    def unmapped(self) -> Mapping[str, str]:
        """GGUF tensors not exposed, each with the reason (for the anatomy's unclaimed list)."""
        return self._mapping.unmapped

    def gguf_name(self, name: str) -> str:
        """The stored GGUF name of a tensor given by its Hugging Face name."""
        found = self._mapping.to_gguf.get(name)
        if found is None:
            raise CheckpointError(f"model {self.name!r}: no tensor {name!r} in the checkpoint")
        return found

    def tensor_names(self) -> list[str]:
        return sorted(self._mapping.to_gguf)

    def tensor_shapes(self) -> Mapping[str, tuple[int, ...]]:
        return self._shapes

    @cached_property
    def _shapes(self) -> dict[str, tuple[int, ...]]:
        # GGUF lists dimensions innermost first (ne0 = in); torch's order is the reverse.
        return {
            hf: tuple(int(d) for d in reversed(self._stored[g].shape.tolist()))
            for hf, g in self._mapping.to_gguf.items()
        }

    def tensor_quantization(self, name: str) -> str:
        """The stored type of a tensor given by its Hugging Face name ("Q4_1", "F32", ...)."""
        return self._stored[self.gguf_name(name)].tensor_type.name

    def quantization_census(self) -> dict[str, int]:
        """How many of the file's tensors (mapped or not) are stored in each type."""
        return dict(sorted(Counter(t.tensor_type.name for t in self._stored.values()).items()))

    def tensor(self, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """One tensor, dequantized, in HF order, converted to `dtype`; NaN/Inf fail naming it."""
        stored = self._stored[self.gguf_name(name)]
        values = torch.from_numpy(self._dequantized(stored))
        if self.architecture.qk_permuted:
            values = self._unpermuted(name, stored, values)
        out = values.to(dtype)
        if out.is_floating_point():
            bad = non_finite_count(out)
            if bad:
                raise CheckpointError(
                    f"model {self.name!r}: tensor {name!r} in {self.file.name!r} has {bad} of "
                    f"{out.numel()} values that are NaN or Inf"
                )
        return out

    def _dequantized(self, stored: ReaderTensor) -> np.ndarray[Any, Any]:
        qtype = stored.tensor_type
        if not can_dequantize(qtype):
            raise self._type_error(stored)
        try:
            values = (
                np.asarray(stored.data) if qtype in PLAIN_TYPES else dequantize(stored.data, qtype)
            )
        except (NotImplementedError, ValueError) as e:
            raise CheckpointError(
                f"model {self.name!r}: GGUF file {self.file.name!r}: tensor {stored.name!r} "
                f"({qtype.name}) cannot be dequantized: {one_line(e)}"
            ) from None
        # The reader's F32/F16 arrays are views of the read-only map: copy before torch owns it.
        return values if values.flags.writeable else values.copy()

    def _type_error(self, stored: ReaderTensor) -> CheckpointError:
        from importlib.metadata import version

        return CheckpointError(
            f"model {self.name!r}: GGUF file {self.file.name!r}: tensor {stored.name!r} is "
            f"stored as {stored.tensor_type.name}, which gguf {version('gguf')} cannot dequantize"
        )

    def _unpermuted(self, name: str, stored: ReaderTensor, values: torch.Tensor) -> torch.Tensor:
        """Q/K rows back in transformers' order (llama only; see rope_layout)."""
        if name.endswith(("self_attn.q_proj.weight", "self_attn.q_proj.bias")):
            heads = int(self.config["num_attention_heads"])
        elif name.endswith(("self_attn.k_proj.weight", "self_attn.k_proj.bias")):
            heads = int(self.config["num_key_value_heads"])
        else:
            return values
        try:
            return unpermute_rows(values, heads)
        except ValueError as e:
            raise CheckpointError(
                f"model {self.name!r}: tensor {name!r} ({stored.name!r} in {self.file.name!r}) "
                f"has shape {list(values.shape)}: {e}, so its RoPE row order cannot be undone"
            ) from None

    @cached_property
    def fingerprint(self) -> str:
        """sha256 over the file's name and bytes (the metadata is the config)."""
        digest = hashlib.sha256()
        digest.update(self.file.name.encode())
        with self.file.open("rb") as fh:
            while block := fh.read(_FINGERPRINT_BLOCK):
                digest.update(block)
        return digest.hexdigest()

    def validate(self) -> None:
        """Read the header, config and names now, and refuse a type gguf cannot dequantize,
        so that a broken file fails before any measure runs."""
        for stored in self._stored.values():
            if not can_dequantize(stored.tensor_type):
                raise self._type_error(stored)
        _ = self.config
        _ = self._shapes


def is_gguf(path: Path) -> bool:
    """Whether a source path is a GGUF checkpoint (the file, or a folder holding .gguf only)."""
    if path.is_file():
        return path.suffix == ".gguf"
    return (
        path.is_dir()
        and any(path.glob("*.gguf"))
        and not any(path.glob("*.safetensors"))
        and not (path / "config.json").is_file()
    )
