"""float64 symmetry checks at float64 resolution on the RMSNorm families
(terrain/symmetry/native_norms.py).

transformers' RMSNorms of these families cast to float32, so a float64 module's output has
float32 resolution and a symmetry violation below ~6e-8 vanishes. With the norms run in the
input dtype for the check, a violation planted at 1e-8 (and one at 1e-9, below float32's
resolution) must show, far above the 1e-10 tolerance's floor; the library's own norms are
the negative control: the 1e-9 violation disappears into their rounding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from terrain.checkpoint import Checkpoint
from terrain.modules import build_module
from terrain.symmetry.measure import TOLERANCE
from terrain.symmetry.native_norms import native_norms, resolution
from terrain.symmetry.weights import relative_error
from terrain.tracing import primary_output
from tests.conftest import build_tiny

FAMILIES = ("llama-tiny", "qwen3-tiny", "qwen3_5-tiny", "olmo3-tiny")


def _module(name: str, cache: Path) -> torch.nn.Module:
    ckpt = Checkpoint(build_tiny(name, cache), name=name)
    module: torch.nn.Module = build_module(
        ckpt, dtype="float64", device="cpu", trust_remote_code=False
    )
    return module


def _inputs(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    table: Any = module.get_input_embeddings()  # type: ignore[operator]
    vocab = int(table.num_embeddings)
    ids = torch.randint(0, vocab, (2, 8), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids}


def _planted(module: torch.nn.Module, inputs: dict[str, torch.Tensor], size: float) -> float:
    """Relative output change when every MLP down-projection is scaled by 1 + size: a
    violation of relative size `size` in the weights the MLP symmetries touch."""
    with torch.no_grad():
        reference = primary_output(module(**inputs))
        downs = [p for n, p in module.named_parameters() if n.endswith("down_proj.weight")]
        assert downs
        for p in downs:
            p.mul_(1.0 + size)
        try:
            return relative_error(primary_output(module(**inputs)), reference)
        finally:
            for p in downs:
                p.div_(1.0 + size)


@pytest.mark.parametrize("name", FAMILIES)
def test_a_planted_violation_below_float32_resolution_is_seen(
    name: str, replica_cache: Path, one_torch_thread: None
) -> None:
    module = _module(name, replica_cache)
    inputs = _inputs(module)
    with native_norms(module) as patched:
        assert patched  # the family's norms are listed
        res, why = resolution(module, torch.float64, patched=True)
        at_1e8 = _planted(module, inputs, 1e-8)
        at_1e9 = _planted(module, inputs, 1e-9)
    assert res < 1e-12, why
    assert at_1e8 > TOLERANCE[torch.float64], at_1e8
    assert at_1e9 > TOLERANCE[torch.float64] / 10, at_1e9
    # linear in the violation at float64 resolution: 1e-8 moves it ten times 1e-9. Not on
    # Qwen3.5: its linear-attention kernel (transformers' torch fallback) computes in
    # float32, so what a violation feeds into those layers comes back with float32 noise
    # (it is still seen: the residual stream itself stays float64).
    if name != "qwen3_5-tiny":
        assert at_1e8 / at_1e9 == pytest.approx(10.0, rel=1e-3)
    # negative control: the library's float32-casting norms round the 1e-9 violation away
    # (or to a float32 step), so its ratio to the 1e-8 one is not that linear law
    lib_1e8 = _planted(module, inputs, 1e-8)
    lib_1e9 = _planted(module, inputs, 1e-9)
    assert resolution(module, torch.float64, patched=False)[0] > 1e-8
    assert lib_1e9 == 0.0 or lib_1e8 / lib_1e9 != pytest.approx(10.0, rel=1e-3)


@pytest.mark.parametrize("name", FAMILIES)
def test_native_norms_compute_the_library_formula(
    name: str, replica_cache: Path, one_torch_thread: None
) -> None:
    """In float32 the patched norms give the library's own output (the casts are no-ops),
    and the patch is gone after the block."""
    ckpt = Checkpoint(build_tiny(name, replica_cache), name=name)
    module = build_module(ckpt, dtype="float32", device="cpu", trust_remote_code=False)
    inputs = _inputs(module)
    with torch.no_grad():
        for p in module.parameters():  # gains away from their init, so the form matters
            if p.ndim == 1:
                p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
        library = primary_output(module(**inputs))
        with native_norms(module):
            patched = primary_output(module(**inputs))
        after = primary_output(module(**inputs))
    assert relative_error(patched, library) < 1e-5
    assert torch.equal(after, library)
