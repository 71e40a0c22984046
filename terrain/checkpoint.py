"""A checkpoint folder: lazy config, safetensors tensors read through mmap, a content fingerprint.

Tensors are read one at a time on request, so a weights-only run holds a few tensors at
once and workers share the page cache. The nn.Module is built only when asked for.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from terrain.errors import CheckpointError

INDEX_FILE = "model.safetensors.index.json"
_FINGERPRINT_BLOCK = 1 << 20


def non_finite_count(t: torch.Tensor) -> int:
    """How many values of a floating-point tensor are NaN or ±Inf.

    A NaN or Inf anywhere makes the sum non-finite: one reduction instead of a mask the
    size of the tensor. Only a non-finite sum (or a finite-valued one that overflows) pays
    for the exact count.
    """
    if bool(torch.isfinite(t.sum())):
        return 0
    return int((~torch.isfinite(t)).sum())


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
        try:
            data = json.loads(cfg_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(
                f"model {self.name!r}: no config.json in {str(self.path)!r}"
            ) from None
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(
                f"model {self.name!r}: {str(cfg_path)!r} is not readable JSON: {e}"
            ) from None
        if not isinstance(data, dict):
            raise CheckpointError(f"model {self.name!r}: {str(cfg_path)!r} is not a JSON object")
        return data

    @cached_property
    def _tensor_files(self) -> dict[str, Path]:
        """Tensor name -> the safetensors file holding it (single file or sharded index)."""
        index = self.path / INDEX_FILE
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
                raise CheckpointError(
                    f"model {self.name!r}: {str(index)!r} has no readable weight_map: {e}"
                ) from None
            return {str(k): self.path / str(v) for k, v in weight_map.items()}
        files = sorted(self.path.glob("*.safetensors"))
        if not files:
            pickled = sorted(p.name for p in self.path.glob("*.bin"))
            hint = (
                f"; found {pickled} (pickle): convert to safetensors, terrain does not unpickle"
                if pickled
                else ""
            )
            raise CheckpointError(
                f"model {self.name!r}: no *.safetensors weights in {str(self.path)!r}{hint}"
            )
        out: dict[str, Path] = {}
        for f in files:
            for key in self._open(f).keys():  # noqa: SIM118 (a safe_open handle, not a dict)
                out[key] = f
        return out

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
        return {f: self._open(f) for f in sorted(set(self._tensor_files.values()))}

    def tensor_names(self) -> list[str]:
        return sorted(self._tensor_files)

    def tensor_shapes(self) -> Mapping[str, tuple[int, ...]]:
        return self._shapes

    @cached_property
    def _shapes(self) -> dict[str, tuple[int, ...]]:
        return {
            name: tuple(self._handles[f].get_slice(name).get_shape())
            for name, f in self._tensor_files.items()
        }

    def tensor(self, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """One tensor, converted to `dtype`; fails naming the tensor if it holds NaN or Inf."""
        file = self._tensor_files.get(name)
        if file is None:
            raise CheckpointError(f"model {self.name!r}: no tensor {name!r} in the checkpoint")
        try:
            raw: torch.Tensor = self._handles[file].get_tensor(name)
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(
                f"model {self.name!r}: cannot read tensor {name!r} from {str(file)!r}: {e}"
            ) from None
        out = raw.to(dtype)
        if out.is_floating_point():
            bad = non_finite_count(out)
            if bad:
                raise CheckpointError(
                    f"model {self.name!r}: tensor {name!r} in {file.name!r} has {bad} of "
                    f"{out.numel()} values that are NaN or Inf"
                )
        return out

    @cached_property
    def fingerprint(self) -> str:
        """sha256 over config.json and every weight file's bytes, in name order."""
        digest = hashlib.sha256()
        for file in [self.path / "config.json", *sorted(set(self._tensor_files.values()))]:
            digest.update(file.name.encode())
            with file.open("rb") as fh:
                while block := fh.read(_FINGERPRINT_BLOCK):
                    digest.update(block)
        return digest.hexdigest()

    def validate(self) -> None:
        """Open every file now so that a broken checkpoint fails before any measure runs."""
        _ = self.config
        _ = self._handles
        _ = self._shapes


def build_module(
    checkpoint: Checkpoint, *, dtype: str, device: str, trust_remote_code: bool
) -> Any:
    """The checkpoint's nn.Module in eval mode: the class named in config.json's
    `architectures` when transformers has it, else AutoModel. Safetensors only."""
    import transformers

    names = checkpoint.config.get("architectures") or []
    cls = getattr(transformers, names[0], None) if names else None
    loader = cls if cls is not None else transformers.AutoModel
    try:
        module = loader.from_pretrained(
            checkpoint.path,
            dtype=getattr(torch, dtype),
            trust_remote_code=trust_remote_code,
            use_safetensors=True,
        )
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(
            f"model {checkpoint.name!r}: transformers cannot build the module from "
            f"{str(checkpoint.path)!r}: {e}"
        ) from None
    for pname, param in module.named_parameters():
        bad = non_finite_count(param.detach())
        if bad:
            raise CheckpointError(
                f"model {checkpoint.name!r}: module parameter {pname!r} has {bad} of "
                f"{param.numel()} values that are NaN or Inf"
            )
    return module.to(device).eval()


def load_tokenizer(checkpoint: Checkpoint, trust_remote_code: bool) -> Any:
    """The folder's tokenizer, or False when it ships none (replicas, weights-only folders)."""
    files = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "spiece.model")
    if not any((checkpoint.path / f).is_file() for f in files):
        return False
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(checkpoint.path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise CheckpointError(
            f"model {checkpoint.name!r}: cannot load the tokenizer in {str(checkpoint.path)!r}: {e}"
        ) from None
