"""RMSNorms run in their input's dtype, for a symmetry check only.

transformers' Llama-family RMSNorms (Llama, Qwen3, Qwen3.5, OLMo-3) cast their input to
float32 and back. In a float64 module every norm then rounds the residual stream to float32
resolution (2⁻²⁴ ≈ 6e-8 relative): a float64 error below that is rounded away before the
output, and a symmetry check reports exactly 0.0 under a 1e-10 tolerance it cannot see.

`native_norms(module)` replaces, for the duration of a `with` block, the forward of every
RMSNorm whose class is listed here by the same formula evaluated in the input's dtype
(nothing else of the module changes; the original forwards come back on exit, also on an
error). The formulas are the classes' own (transformers 5.x), with only the casts left out;
tests/unit/test_native_norms.py checks each equals the library's in float32.

`resolution(module)` is the relative resolution of the module's output path after that:
float64 ε where no float32-casting norm is left, else 2⁻²⁴ (a class not listed here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.nn import functional

FLOAT32_RESOLUTION = 2.0**-24  # relative rounding of float32


def _rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def _weight_times(norm: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """Llama, Qwen3: weight · (x / rms(x)); OLMo-3 has the same value, cast after."""
    return lambda x: norm.weight * _rms(x, norm.variance_epsilon)


def _one_plus_weight(norm: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """Qwen3.5: (x / rms(x)) · (1 + weight) (its gains are stored as offsets from 1)."""
    return lambda x: _rms(x, norm.eps) * (1.0 + norm.weight)


def _gated(norm: Any) -> Callable[..., torch.Tensor]:
    """Qwen3.5's gated norm of the linear-attention output: weight · x/rms(x) · act(gate)."""

    def forward(x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        name = "silu" if norm.activation in ("silu", "swish") else norm.activation
        normed: torch.Tensor = norm.weight * _rms(x, norm.variance_epsilon)
        gated: torch.Tensor = normed * getattr(functional, name)(gate)
        return gated

    return forward


NATIVE_FORMS: dict[str, Callable[[Any], Callable[..., torch.Tensor]]] = {
    "LlamaRMSNorm": _weight_times,
    "Qwen3RMSNorm": _weight_times,
    "Olmo3RMSNorm": _weight_times,
    "Qwen3_5RMSNorm": _one_plus_weight,
    "Qwen3_5RMSNormGated": _gated,
}


def _casting_norms(module: Any) -> Iterator[Any]:
    """Submodules of a norm class that computes in float32 whatever the dtype: the RMSNorms,
    and T5's (its mean square is taken in float32; it is not patched, so a T5 module keeps
    float32 resolution in the direction of each token's scale, and says so)."""
    for sub in module.modules():
        name = type(sub).__name__
        if "RMSNorm" in name or name.endswith("T5LayerNorm"):
            yield sub


@contextmanager
def native_norms(module: Any) -> Iterator[list[str]]:
    """Listed RMSNorms run in the input dtype inside the block; yields the classes patched."""
    patched: list[Any] = []
    try:
        for sub in _casting_norms(module):
            form = NATIVE_FORMS.get(type(sub).__name__)
            if form is not None:
                sub.forward = form(sub)  # an instance attribute shadows the class's forward
                patched.append(sub)
        yield sorted({type(s).__name__ for s in patched})
    finally:
        for sub in patched:
            del sub.forward


def resolution(module: Any, dtype: torch.dtype, patched: bool) -> tuple[float, str]:
    """The relative resolution of the output path, and why."""
    if dtype != torch.float64:
        return float(torch.finfo(dtype).eps), f"the module runs in {dtype}"
    left = sorted(
        {
            type(s).__name__
            for s in _casting_norms(module)
            if not (patched and type(s).__name__ in NATIVE_FORMS)
        }
    )
    if left:
        return FLOAT32_RESOLUTION, f"{', '.join(left)} cast to float32 on the output path"
    why = (
        "RMSNorms run in float64 for the check"
        if patched and any(True for _ in _casting_norms(module))
        else "float64 throughout"
    )
    return float(torch.finfo(torch.float64).eps), why
