"""A null quantized like its model: each tensor rounded through the GGUF type its
counterpart is stored in.

A 4-bit checkpoint's sparsity at fixed thresholds, its spectra and its norms carry the
quantization grid; a float null would put that grid's effect on one side of the comparison
only. So a GGUF model's null is the random-init replica of the same config with every
tensor quantized and dequantized with the stored type of the model's tensor of the same
name (gguf's own quantizer). Quantization runs along the last dimension, in blocks of 32
(Q4_0 … Q8_0) or 256 (K-quants) values; llama.cpp's Q/K row permutation moves whole rows,
so quantizing in transformers' row order is the same as quantizing in the file's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import numpy as np
import torch
from gguf import quants

from terrain.gguf.checkpoint import GGUFCheckpoint
from terrain.gguf.export import quantized_round_trip

_FLOATS = ("F32", "F64")  # stored as is: nothing to round


class Requantizer:
    """Rounds a tensor the way the model's tensor of the same name is stored."""

    def __init__(self, types: Mapping[str, str]) -> None:
        self.types = dict(types)  # Hugging Face name -> stored GGUF type name
        self.unsupported: set[str] = set()  # types gguf cannot quantize to

    @classmethod
    def like(cls, checkpoint: GGUFCheckpoint) -> Requantizer:
        return cls({n: checkpoint.tensor_quantization(n) for n in checkpoint.tensor_names()})

    def __call__(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        kind = self.types.get(name)
        if kind is None or kind in _FLOATS:
            return tensor
        values = tensor.detach().to(torch.float32).cpu().numpy()
        try:
            rounded = quantized_round_trip(values, kind)
        except (quants.QuantError, NotImplementedError, ValueError):
            self.unsupported.add(kind)
            return tensor
        out = torch.from_numpy(np.ascontiguousarray(rounded, dtype=np.float32))
        return out.reshape(tensor.shape).to(tensor.dtype)

    def describe(self) -> str:
        kinds = Counter(k for k in self.types.values() if k not in _FLOATS)
        done = ", ".join(f"{k}: {n} tensors" for k, n in sorted(kinds.items()))
        text = f"every tensor quantized and dequantized with its model tensor's type ({done})"
        if self.unsupported:
            text += "; left in float where gguf has no quantizer for the type: " + ", ".join(
                sorted(self.unsupported)
            )
        return text
