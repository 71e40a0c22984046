"""All ESD shape measures of a matrix (or of one role's L layers) from its eigenvalues."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from terrain.measures.esd.bulk import DEFAULT_TW_SCALES, MPBulk, MPBulkRows, mp_bulk_rows
from terrain.measures.esd.common import Eigenvalues, eigenvalue_rows, matrix_dims, one_spectrum
from terrain.measures.esd.norms import EsdNorms, EsdNormsRows, esd_norms_rows
from terrain.measures.esd.powerlaw import (
    MIN_TAIL,
    WW_EVALS_THRESH,
    WW_SMALL_N,
    KSDistance,
    PowerLawFit,
    PowerLawRows,
    fit_power_law_rows,
)


@dataclass(frozen=True)
class EsdShape:
    """Power-law tail, WeightWatcher's norm metrics and the MP bulk of one matrix."""

    shape: tuple[int, int]
    power_law: PowerLawFit
    norms: EsdNorms
    bulk: MPBulk

    def as_dict(self) -> dict[str, object]:
        return {
            "shape": list(self.shape),
            "power_law": self.power_law.as_dict(),
            "norms": self.norms.as_dict(),
            "bulk": self.bulk.as_dict(),
        }


@dataclass(frozen=True)
class EsdShapeRows:
    """The same for L matrices of one shape (a role's layers): per-layer arrays in each part."""

    shape: tuple[int, int]
    power_law: PowerLawRows
    norms: EsdNormsRows
    bulk: MPBulkRows

    def __len__(self) -> int:
        return len(self.power_law)

    def row(self, i: int) -> EsdShape:
        return EsdShape(self.shape, self.power_law.row(i), self.norms.row(i), self.bulk.row(i))

    def as_dict(self) -> dict[str, object]:
        return {
            "shape": list(self.shape),
            "rows": [self.row(i).as_dict() for i in range(len(self))],
        }


def esd_shape_rows(
    rows: Eigenvalues,
    shape: Sequence[int],
    *,
    floor: float = WW_EVALS_THRESH,
    min_evals: int = WW_SMALL_N,
    min_tail: int = MIN_TAIL,
    xmin_max: float | None = None,
    ks: KSDistance = "weightwatcher",
    tw_scales: float = DEFAULT_TW_SCALES,
    from_gram: bool = True,
) -> EsdShapeRows:
    """Every shape measure of an (L, M) stack of eigenvalue rows λ = σ² of `shape` matrices.

    The rows are sorted once; options as in `fit_power_law_rows`, `esd_norms_rows` and
    `mp_bulk_rows`.
    """
    lam, _ = eigenvalue_rows(rows)
    matrix_dims(shape, lam.shape[1])  # a wrong shape raises before any work
    fits = fit_power_law_rows(
        lam, floor=floor, min_evals=min_evals, min_tail=min_tail, xmin_max=xmin_max, ks=ks
    )
    return EsdShapeRows(
        shape=(int(shape[0]), int(shape[1])),
        power_law=fits,
        norms=esd_norms_rows(lam, shape, fits.alpha, from_gram=from_gram),
        bulk=mp_bulk_rows(lam, shape, tw_scales=tw_scales),
    )


def esd_shape(
    eigenvalues: Eigenvalues,
    shape: Sequence[int],
    *,
    floor: float = WW_EVALS_THRESH,
    min_evals: int = WW_SMALL_N,
    min_tail: int = MIN_TAIL,
    xmin_max: float | None = None,
    ks: KSDistance = "weightwatcher",
    tw_scales: float = DEFAULT_TW_SCALES,
    from_gram: bool = True,
) -> EsdShape:
    """Every shape measure of one matrix of `shape` from its M eigenvalues λ = σ²."""
    lam = one_spectrum(eigenvalues)
    return esd_shape_rows(
        lam,
        shape,
        floor=floor,
        min_evals=min_evals,
        min_tail=min_tail,
        xmin_max=xmin_max,
        ks=ks,
        tw_scales=tw_scales,
        from_gram=from_gram,
    ).row(0)
