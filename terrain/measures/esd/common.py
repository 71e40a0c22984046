"""Input handling shared by the ESD measures: eigenvalue rows, matrix shapes, JSON values,
and what their per-row results have in common."""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import torch
from numpy.typing import NDArray

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

OK = "ok"  # the status of a measure that could be computed

Eigenvalues = npt.ArrayLike | torch.Tensor


class _OneMatrix(Protocol):
    def as_dict(self) -> dict[str, float | int | str | None]: ...


Row = TypeVar("Row", bound=_OneMatrix, covariant=True)
One = TypeVar("One", bound="DataclassInstance")


@functools.cache
def _field_types(row_type: type[DataclassInstance]) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
    hints = typing.get_type_hints(row_type)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(row_type))


class PerRow(Generic[Row]):
    """A measure of L matrices, one entry per row: each row's status, `row(i)` the measure
    of matrix i, and `as_dict()` with every row's."""

    status: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.status)

    def row(self, i: int) -> Row:
        raise NotImplementedError

    def pick(self, row_type: type[One], i: int, **given: object) -> One:
        """Matrix i's entry as `row_type` (a dataclass): each field from the attribute of the
        same name, its entry i converted to the field's type where it holds one per row (an
        array, the statuses), else the value all rows share as it is; `given`: the fields
        that have no attribute here."""
        values = dict(given)
        for name, kind in _field_types(row_type):
            if name not in values:
                column = getattr(self, name)
                per_row = isinstance(column, (np.ndarray, tuple))
                values[name] = kind(column[i]) if per_row else column
        return row_type(**values)

    def as_dict(self) -> dict[str, list[dict[str, float | int | str | None]]]:
        return {"rows": [self.row(i).as_dict() for i in range(len(self))]}


def eigenvalue_rows(eigenvalues: Eigenvalues) -> tuple[NDArray[np.float64], bool]:
    """(L, n) float64 rows sorted ascending, from one row or a stack of rows in any order.

    Returns the rows and whether the input was a single row. Negative values (rounding of
    an eigensolver on a positive semi-definite Gram) are kept: each measure says how it
    treats them. Non-finite values are kept too, and each measure marks their row.
    """
    if isinstance(eigenvalues, torch.Tensor):
        array = eigenvalues.detach().to("cpu", torch.float64).numpy()
    else:
        array = np.asarray(eigenvalues, dtype=np.float64)
    single = array.ndim == 1
    if single:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"eigenvalues must be one row or an (L, n) stack, got shape {array.shape}")
    return np.sort(array, axis=1), single


def one_spectrum(eigenvalues: Eigenvalues) -> NDArray[np.float64]:
    """One matrix's eigenvalues as a (1, n) row sorted ascending; more rows raise."""
    lam, _ = eigenvalue_rows(eigenvalues)
    if lam.shape[0] != 1:
        raise ValueError(f"one spectrum expected, got {lam.shape[0]} rows")
    return lam


def statuses(problems: Sequence[str | None]) -> tuple[str, ...]:
    """Each row's status: its problem, or OK where it had none."""
    return tuple(OK if p is None else p for p in problems)


def matrix_dims(shape: Sequence[int], n_eigenvalues: int) -> tuple[int, int]:
    """(N, M) = (larger, smaller) dimension of a matrix of `shape`, WeightWatcher's N and M.

    The eigenvalues of the smaller Gram are exactly M; anything else is a caller's error
    (not a degenerate matrix), so it raises.
    """
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be two positive dimensions, got {tuple(shape)}")
    big, small = int(max(shape)), int(min(shape))
    if n_eigenvalues != small:
        raise ValueError(
            f"a matrix of shape {tuple(shape)} has {small} squared singular values, "
            f"got rows of {n_eigenvalues}"
        )
    return big, small


def row_problem(row: NDArray[np.float64]) -> str | None:
    """Why a row of eigenvalues cannot be measured at all, or None."""
    if row.size == 0:
        return "no eigenvalues"
    if not np.isfinite(row).all():
        return "non-finite eigenvalues"
    if row[-1] <= 0.0:
        return "all eigenvalues are 0"
    return None


def measurable(
    lam: NDArray[np.float64], problems: Sequence[str | None]
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """(rows, bad): the rows to compute on and which of them have a problem. A bad row is
    replaced by ones so that nothing warns (its results are set to NaN after); negative
    eigenvalues count as 0."""
    bad = np.array([p is not None for p in problems])
    return np.where(bad[:, None], 1.0, np.maximum(lam, 0.0)), bad


def json_float(x: float) -> float | None:
    """A float for JSON: NaN and ±inf (not JSON numbers) become None."""
    x = float(x)
    return x if math.isfinite(x) else None
