"""The shape of a weight matrix's eigenvalue spectrum (ESD), as WeightWatcher models it.

Input: the M = min(rows, cols) eigenvalues λ = σ² of WᵀW (or WWᵀ) of one matrix W, as the
battery computes them (terrain.measures.spectra: float64 Gram, descending, unresolved
values 0), with W's shape; or an (L, M) stack of them for one role's L layers. Nothing
here decomposes a matrix again, except the correlation traps, which need W itself.

- `powerlaw`: the tail exponent α by continuous MLE with xmin at the smallest KS distance
  (Clauset, Shalizi and Newman 2009), over all candidates at once; WeightWatcher's
  candidate rules and eigenvalue floor;
- `norms`: WeightWatcher's alpha_weighted, log_norm, log_spectral_norm, log_alpha_norm,
  stable rank, matrix rank and spectral entropy, with its normalisation (λ = σ² of W);
- `bulk`: the Marchenko–Pastur bulk for the matrix's shape with the entry variance fitted
  to the middle of the spectrum, its edge λ+, the Tracy–Widom margin, spikes above it;
- `traps`: correlation traps, λ_max of a seeded entry-shuffled copy of W against its edge;
- `shape`: all of the eigenvalue measures together, per matrix or per stack of layers.

Every result is a frozen dataclass whose `as_dict()` holds plain Python values (NaN and
infinities as None). Degenerate input (too few eigenvalues, zeros, non-finite values)
gives NaN and a reason in `status`, never an exception; a shape that does not match the
number of eigenvalues, or an invalid option, raises ValueError.
"""

from terrain.measures.esd.bulk import (
    BULK_RANKS,
    DEFAULT_TW_SCALES,
    TW1_QUANTILES,
    MPBulk,
    MPBulkRows,
    mp_bulk,
    mp_bulk_rows,
    mp_edges,
    mp_quantiles,
    tracy_widom_scale,
)
from terrain.measures.esd.common import OK
from terrain.measures.esd.norms import EsdNorms, EsdNormsRows, esd_norms, esd_norms_rows
from terrain.measures.esd.powerlaw import (
    MIN_TAIL,
    WW_EVALS_THRESH,
    WW_SMALL_N,
    KSDistance,
    PowerLawFit,
    PowerLawRows,
    fit_power_law,
    fit_power_law_rows,
)
from terrain.measures.esd.shape import EsdShape, EsdShapeRows, esd_shape, esd_shape_rows
from terrain.measures.esd.traps import CorrelationTrap, correlation_trap, shuffled, top_eigenvalue

__all__ = [
    "BULK_RANKS",
    "DEFAULT_TW_SCALES",
    "MIN_TAIL",
    "OK",
    "TW1_QUANTILES",
    "WW_EVALS_THRESH",
    "WW_SMALL_N",
    "CorrelationTrap",
    "EsdNorms",
    "EsdNormsRows",
    "EsdShape",
    "EsdShapeRows",
    "KSDistance",
    "MPBulk",
    "MPBulkRows",
    "PowerLawFit",
    "PowerLawRows",
    "correlation_trap",
    "esd_norms",
    "esd_norms_rows",
    "esd_shape",
    "esd_shape_rows",
    "fit_power_law",
    "fit_power_law_rows",
    "mp_bulk",
    "mp_bulk_rows",
    "mp_edges",
    "mp_quantiles",
    "shuffled",
    "top_eigenvalue",
    "tracy_widom_scale",
]
