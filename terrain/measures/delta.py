"""What changed between a tensor W and the same tensor W₀ of a base model.

Definitions (sums over every entry, accumulated in float64):

- relative change ‖W − W₀‖_F / ‖W₀‖_F: 0 for an unchanged tensor, exactly 2 for W = 3·W₀,
  and about √2 for two independent i.i.d. matrices of one scale (unrelated random inits);
  undefined (NaN) where W₀ = 0 but W is not (a bias trained from zero);
- cosine ⟨W, W₀⟩ / (‖W‖·‖W₀‖) of the flattened tensors (1 unchanged or rescaled, about
  0 ± 1/√n for independent ones);
- of 2-D maps, the spectrum of ΔW = W − W₀: its squared singular values from the float64
  Gram of ΔW (terrain.measures.spectra: the same eigensolver and resolution rule as every
  spectrum), then its numerical rank (σ² above the resolution), stable rank Σσ²/σ_max² and
  effective rank, Roy and Vetterli's exp of the entropy of σ/Σσ (spectra.effective_rank).
  A fine-tune's ΔW is often of low rank (LoRA merges have rank r exactly); an unchanged
  tensor has ΔW = 0, whose rank, stable rank and effective rank are 0;
- of the same maps, the power-law tail exponent α of W₀'s spectrum (esd.powerlaw, the
  battery's fit with its defaults), from W₀'s Gram formed over the same blocks: the
  battery would compute the same eigenvalues for the base model.

Streaming: W and W₀ may be the stored tensors themselves (memory-mapped bf16, fp16 or fp32
views). They are read in blocks of the inner axis of the smaller Gram
(kernels.inner_blocks), each block converted to float64 on its own, so the working set is
two n×n float64 Grams and a few blocks (`pair_delta_bytes`), never a float64 copy of the
tensor: a 7B MLP weight (11008 × 4096) costs about 0.8 GiB, its embedding table a few
blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from terrain.measures.esd import PowerLawFit, fit_power_law
from terrain.measures.kernels import BLOCK_BYTES, as_float64, dot64, gram, inner_blocks, take_block
from terrain.measures.spectra import effective_rank, spectra_from_squared, squared_singular_values


@dataclass(frozen=True)
class PairNorms:
    """Frobenius norms and inner product of one tensor pair."""

    norm: float  # ‖W‖
    base_norm: float  # ‖W₀‖
    delta_norm: float  # ‖W − W₀‖
    inner: float  # ⟨W, W₀⟩
    size: int  # entries per tensor

    @property
    def relative_change(self) -> float:
        if self.base_norm > 0:
            return self.delta_norm / self.base_norm
        return 0.0 if self.delta_norm == 0 else math.nan

    @property
    def cosine(self) -> float:
        scale = self.norm * self.base_norm
        if scale <= 0:
            return 1.0 if self.delta_norm == 0 else math.nan  # both zero: unchanged
        return max(-1.0, min(1.0, self.inner / scale))


@dataclass(frozen=True)
class DeltaSpectrum:
    """The spectrum of ΔW of one 2-D map, and the base's power-law tail."""

    n: int  # singular values: min(out, in)
    rank: int  # σ² above the float64 resolution (spectra.squared_singular_values)
    stable_rank: float  # Σσ²/σ_max² of ΔW (0 when ΔW = 0)
    effective_rank: float  # Roy and Vetterli (0 when ΔW = 0)
    sv_max: float  # σ_max of ΔW
    base_alpha: PowerLawFit  # α of W₀'s eigenvalue tail


@dataclass(frozen=True)
class TensorDelta:
    norms: PairNorms
    spectrum: DeltaSpectrum | None  # None: not a 2-D map, or spectra not asked for


def as_matrix(t: torch.Tensor) -> torch.Tensor:
    """A tensor as a 2-D view for blocking: a scalar as 1×1, a vector as one row, a
    higher-dimensional tensor (a convolution) as (out, rest)."""
    if t.dim() == 2:
        return t
    if t.dim() == 0:
        return t.reshape(1, 1)
    if t.dim() == 1:
        return t.reshape(1, -1)
    return t.reshape(t.shape[0], -1)


def pair_delta_bytes(
    shape: tuple[int, ...], *, spectra: bool, block_bytes: int = BLOCK_BYTES
) -> int:
    """Working bytes of `pair_delta`: a block of W and of W₀ in float64, their difference
    and a block copy in the stored dtype (a block is at most `block_bytes`, and no more than
    the whole tensor); with spectra, the two float64 Grams, one block's product and the
    eigensolver's copy."""
    block = min(block_bytes, 8 * max(1, math.prod(shape)))
    blocks = 4 * block
    if not spectra or len(shape) != 2:
        return blocks
    n = min(shape)
    return blocks + 4 * 8 * n * n


def pair_delta(
    w: torch.Tensor,
    w0: torch.Tensor,
    *,
    spectra: bool,
    device: torch.device | str = "cpu",
    block_bytes: int = BLOCK_BYTES,
) -> TensorDelta:
    """The change from `w0` to `w` (one shape, any float dtypes), block by block; with
    `spectra` (2-D maps only) also the spectrum of ΔW and the base's α."""
    if w.shape != w0.shape:
        raise ValueError(f"a delta needs one shape, got {list(w.shape)} and {list(w0.shape)}")
    m, m0 = as_matrix(w), as_matrix(w0)
    spectra = spectra and w.dim() == 2
    rows, cols = int(m.shape[0]), int(m.shape[1])
    outer = rows < cols  # the smaller Gram, as spectra.spectrum forms it
    n = min(rows, cols)
    ww = bb = wb = dd = 0.0
    delta_gram = base_gram = None
    if spectra:
        delta_gram = torch.zeros(n, n, dtype=torch.float64, device=device)
        base_gram = torch.zeros(n, n, dtype=torch.float64, device=device)
    for block in inner_blocks((rows, cols), outer=outer, block_bytes=block_bytes):
        a = as_float64(take_block(m, block, outer=outer).to(device))
        b = as_float64(take_block(m0, block, outer=outer).to(device))
        ww += dot64(a, a)
        bb += dot64(b, b)
        wb += dot64(a, b)
        d = a - b  # never in place: a float64 checkpoint's block may be the mapped file
        del a
        dd += dot64(d, d)
        if delta_gram is not None and base_gram is not None:
            delta_gram += gram(d, outer=outer, dtype=torch.float64)
            base_gram += gram(b, outer=outer, dtype=torch.float64)
        del b, d
    norms = PairNorms(math.sqrt(ww), math.sqrt(bb), math.sqrt(dd), wb, int(w.numel()))
    if delta_gram is None or base_gram is None or not math.isfinite(ww + bb):
        return TensorDelta(norms, None)  # NaN or Inf: no spectrum, the caller names the tensor
    return TensorDelta(norms, delta_spectrum(delta_gram, base_gram))


def delta_spectrum(delta_gram: torch.Tensor, base_gram: torch.Tensor) -> DeltaSpectrum:
    """The statistics of ΔW's spectrum and W₀'s tail from their float64 Grams."""
    s2 = squared_singular_values(delta_gram)
    base = squared_singular_values(base_gram)
    rank = int((s2 > 0).sum())
    alpha = fit_power_law(base)
    n = int(s2.shape[0])
    if rank == 0:
        return DeltaSpectrum(n, 0, 0.0, 0.0, 0.0, alpha)
    stats = spectra_from_squared(s2)
    return DeltaSpectrum(
        n=n,
        rank=rank,
        stable_rank=float(stats.stable_rank[0]),
        effective_rank=float(effective_rank(s2)[0]),
        sv_max=float(stats.sv_max[0]),
        base_alpha=alpha,
    )
