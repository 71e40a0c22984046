"""The library module of a checkpoint, and its tokenizer: built only when a property runs one.

Weights-only properties never build a module. A forward property builds it through
transformers' own loading (names, ties and dtype as the library has them), and a module
any of whose parameters transformers would have to initialise itself is refused: a
missing tensor must never be replaced by random values under the model's name.
"""

from __future__ import annotations

from typing import Any

import torch

from terrain.architecture import model_class
from terrain.checkpoint import Checkpoint, non_finite_count
from terrain.errors import CheckpointError


def build_module(
    checkpoint: Checkpoint, *, dtype: str, device: str, trust_remote_code: bool
) -> Any:
    """The checkpoint's nn.Module in eval mode: the class named in config.json's
    `architectures` when transformers has it, else AutoModel. Safetensors only."""
    import transformers

    where = f"model {checkpoint.name!r}: {str(checkpoint.path / 'config.json')!r}"
    cls = model_class(where, checkpoint.config, remote_code=trust_remote_code)
    loader = cls if cls is not None else transformers.AutoModel
    try:
        module, info = loader.from_pretrained(
            checkpoint.path,
            dtype=getattr(torch, dtype),
            trust_remote_code=trust_remote_code,
            use_safetensors=True,
            output_loading_info=True,
        )
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as e:
        raise CheckpointError(
            f"model {checkpoint.name!r}: transformers cannot build the module from "
            f"{str(checkpoint.path)!r}: {e}"
        ) from None
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise CheckpointError(
            f"model {checkpoint.name!r}: the checkpoint lacks module parameter(s) "
            f"{', '.join(repr(m) for m in missing[:3])}{more}; transformers would initialise "
            "them at random"
        )
    return finite_module(module, checkpoint.name, device)


def finite_module(module: Any, name: str, device: str) -> Any:
    """`module` in eval mode on `device`, refused if any parameter holds NaN or Inf."""
    for pname, param in module.named_parameters():
        bad = non_finite_count(param.detach())
        if bad:
            raise CheckpointError(
                f"model {name!r}: module parameter {pname!r} has {bad} of "
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
