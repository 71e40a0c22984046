"""Learned norm gains γ: per-layer statistics (seed notebook §4) and γ-direction structure.

Statistics per gain vector (the seed's): mean, std, min, max and the counts above 1.5,
below 0.5 and within (0.8, 1.2).

Direction analysis (research note 003): write γ_L = ‖γ_L‖·γ̂_L; a stack whose layers share
one preferred axis has unit directions γ̂_L with cosine near 1 across layers and a PCA of
the centred unit vectors dominated by one component; directions that differ per layer
spread the PCA. Reported: ‖γ_L‖, the layer × layer cosine of γ̂ (crosslayer.cosine_matrix),
the PCA explained-variance ratios, each layer's projection on the top component.

Null: every family here initialises gains to ones (the effective gain, see
`gain_offset`), so at init all directions coincide (cosine 1) and the centred unit vectors
are zero (no PCA): any spread is learned. The random-init replica shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from terrain.family import get_family
from terrain.measures.crosslayer import cosine_matrix

HIGH = 1.5
LOW = 0.5
NEAR_ONE = (0.8, 1.2)


def is_gain_role(role: str) -> bool:
    """Norm gains among the canonical roles: norm_*, q_norm, k_norm, linear_norm, lm_norm, ..."""
    return role.startswith("norm_") or role.endswith("_norm")


def gain_offset(family: str, stack: str, role: str) -> float:
    """What the model adds to the stored weight to get the gain it multiplies by, as the
    family declares it (`Family.norms`; e.g. Qwen3.5's Qwen3_5RMSNorm multiplies by 1 + w).
    The effective gain is offset + stored value."""
    return get_family(family).norms.offset(stack, role)


@dataclass(frozen=True)
class GainStats:
    stack: str
    role: str
    layer: int | None
    size: int
    mean: float
    std: float
    min: float
    max: float
    high: int  # > 1.5
    low: int  # < 0.5
    near_one: int  # in (0.8, 1.2)

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def gain_stats(
    gain: torch.Tensor, *, stack: str = "", role: str = "", layer: int | None = None
) -> GainStats:
    g = gain.detach().reshape(-1).to(torch.float64).cpu().numpy()
    return GainStats(
        stack=stack,
        role=role,
        layer=layer,
        size=int(g.size),
        mean=float(g.mean()),
        std=float(g.std()),
        min=float(g.min()),
        max=float(g.max()),
        high=int(np.sum(g > HIGH)),
        low=int(np.sum(g < LOW)),
        near_one=int(np.sum((g > NEAR_ONE[0]) & (g < NEAR_ONE[1]))),
    )


@dataclass(frozen=True)
class GainDirections:
    stack: str
    role: str
    layers: tuple[int, ...]
    norms: NDArray[np.float64]  # ‖γ_L‖
    cosine: NDArray[np.float64]  # layer × layer cosine of γ̂
    explained: NDArray[np.float64]  # PCA explained-variance ratios of centred γ̂ (empty: none)
    proj_top1: NDArray[np.float64]  # γ̂_L · top component (empty: none)

    @property
    def adjacent(self) -> NDArray[np.float64]:
        return np.diagonal(self.cosine, offset=1).copy()

    @property
    def mean_adjacent(self) -> float:
        return float(self.adjacent.mean())

    @property
    def top1_explained(self) -> float | None:
        return float(self.explained[0]) if self.explained.size else None

    def as_dict(self) -> dict[str, object]:
        return {
            "stack": self.stack,
            "role": self.role,
            "layers": list(self.layers),
            "norms": [float(x) for x in self.norms],
            "adjacent_cosine": [float(x) for x in self.adjacent],
            "mean_adjacent_cosine": self.mean_adjacent,
            "explained_variance": [float(x) for x in self.explained[:10]],
            "top1_explained": self.top1_explained,
            "proj_top1": [float(x) for x in self.proj_top1],
            "cosine": [[float(x) for x in row] for row in self.cosine],
        }


def gain_directions(
    gains: Sequence[torch.Tensor], *, stack: str = "", role: str = "", layers: Sequence[int] = ()
) -> GainDirections:
    """Research note 003's analysis of one norm role's gains across layers (≥ 2 layers)."""
    x = torch.stack([g.detach().reshape(-1).to(torch.float64).cpu() for g in gains]).numpy()
    norms = np.linalg.norm(x, axis=1)
    cos = cosine_matrix([torch.from_numpy(row) for row in x])
    units = x / np.where(norms > 0, norms, 1.0)[:, None]
    centred = units - units.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    total = float(np.sum(s**2))
    # Identical directions (e.g. all gains at their init of ones) leave nothing to explain.
    resolution = x.shape[1] * np.finfo(np.float64).eps
    if total > resolution:
        explained = s**2 / total
        proj = units @ vt[0]
    else:
        explained = np.zeros(0)
        proj = np.zeros(0)
    return GainDirections(
        stack=stack,
        role=role,
        layers=tuple(layers) if layers else tuple(range(len(gains))),
        norms=norms,
        cosine=cos,
        explained=explained,
        proj_top1=proj,
    )
