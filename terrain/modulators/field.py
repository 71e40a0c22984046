"""The geometric field modulator (notebook section 12).

k-simplex channel experts (k = 1, 2, 4; vertices in R^8 around a regular-simplex template)
read the active residual dimensions, measure their simplex with a differentiable
Cayley–Menger determinant, and each produce a gate in (0, 1) per active dimension. Per layer
and expert, the gate is blended as (1 − α) + α·gate, α = clamp(sigmoid(logit), 0.001, 0.35),
and the blends multiply. The null space (default the last 25% of the dimensions, or a seeded
scattered set) is copied through untouched, bit for bit, whatever the alphas and inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import torch
from torch import nn

from terrain.measures.simplex import simplex_cv
from terrain.modulators.lerp import logit


@dataclass(frozen=True)
class FieldModulatorConfig:
    d_model: int
    n_layers: int
    expert_ks: tuple[int, ...] = (1, 2, 4)
    expert_edim: int = 8
    initial_alpha: float = 0.01
    alpha_min: float = 0.001
    alpha_max: float = 0.35
    null_space_fraction: float = 0.25
    null_space_position: Literal["tail", "scattered"] = "tail"
    deform_scale: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.null_space_fraction < 1.0:
            raise ValueError(
                f"null_space_fraction must be in [0, 1), got {self.null_space_fraction}"
            )
        if not 0.0 < self.alpha_min <= self.alpha_max < 1.0:
            raise ValueError(
                f"need 0 < alpha_min <= alpha_max < 1, got {self.alpha_min}, {self.alpha_max}"
            )
        if any(k < 1 or k > self.expert_edim for k in self.expert_ks):
            raise ValueError(
                f"every k must be in [1, expert_edim={self.expert_edim}], got {self.expert_ks}"
            )


def cayley_menger_volume_sq(verts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared pairwise distances (…, n_pairs) and squared volume (…) of k-simplices given as
    (…, k+1, dim) vertices, through the bordered distance determinant (differentiable)."""
    nv = verts.shape[-2]
    k = nv - 1
    gram = verts @ verts.transpose(-1, -2)
    sq = torch.diagonal(gram, dim1=-2, dim2=-1)
    d2 = (sq.unsqueeze(-1) + sq.unsqueeze(-2) - 2 * gram).clamp_min(0)
    i, j = zip(*combinations(range(nv), 2), strict=True)
    pairs = d2[..., list(i), list(j)]
    border = torch.zeros(*d2.shape[:-2], nv + 1, nv + 1, dtype=d2.dtype, device=d2.device)
    border[..., 0, 1:] = 1.0
    border[..., 1:, 0] = 1.0
    border[..., 1:, 1:] = d2
    factor = (-1.0) ** (k + 1) / (2.0**k * math.factorial(k) ** 2)
    return pairs, factor * torch.linalg.det(border)


def regular_simplex(k: int, dim: int) -> torch.Tensor:
    """k+1 vertices of a regular k-simplex with unit edges, centred at the origin, in R^dim."""
    if dim < k:
        raise ValueError(f"a {k}-simplex needs dim >= {k}, got {dim}")
    centred = torch.eye(k + 1, dtype=torch.float64) - 1.0 / (k + 1)
    u, s, _ = torch.linalg.svd(centred)
    coords = (u[:, :k] * s[:k]) / math.sqrt(2.0)  # edges of the centred basis are sqrt(2)
    out = torch.zeros(k + 1, dim, dtype=torch.float64)
    out[:, :k] = coords
    return out


class SimplexExpert(nn.Module):
    """One k-simplex channel: features → deformed template → CM features → gate per dim."""

    def __init__(self, k: int, n_active: int, edim: int, deform_scale: float) -> None:
        super().__init__()
        self.k = k
        self.deform_scale = deform_scale
        self.register_buffer("template", regular_simplex(k, edim).to(torch.float32))
        self.to_deform = nn.Linear(n_active, (k + 1) * edim)
        n_features = k * (k + 1) // 2 + 1
        self.norm = nn.LayerNorm(n_features)
        self.to_gate = nn.Linear(n_features, n_active)

    def forward(self, active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        template: torch.Tensor = self.template  # type: ignore[assignment]
        deform = self.to_deform(active).unflatten(-1, template.shape)
        d2, vol2 = cayley_menger_volume_sq(template + self.deform_scale * deform)
        features = self.norm(torch.cat([d2, vol2.unsqueeze(-1)], dim=-1))
        return torch.sigmoid(self.to_gate(features)), vol2


class FieldModulator(nn.Module):
    def __init__(self, config: FieldModulatorConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        n_null = int(d * config.null_space_fraction)
        if config.null_space_position == "tail":
            null = torch.arange(d - n_null, d)
        else:
            gen = torch.Generator().manual_seed(config.seed)
            null = torch.randperm(d, generator=gen)[:n_null].sort().values
        keep = torch.ones(d, dtype=torch.bool)
        keep[null] = False
        self.register_buffer("active_index", keep.nonzero().squeeze(1))
        self.register_buffer("null_index", null)
        torch.manual_seed(config.seed)  # the experts' init is part of the seeded config
        self.experts = nn.ModuleList(
            SimplexExpert(k, int(keep.sum()), config.expert_edim, config.deform_scale)
            for k in config.expert_ks
        )
        start = logit(config.initial_alpha)
        self.alpha_logits = nn.Parameter(
            torch.full((config.n_layers, len(config.expert_ks)), start)
        )
        # Tests and sweeps may bypass the clamp to reach α = 0 exactly (an exact no-op).
        self.bypass_clamp = False

    @property
    def n_null(self) -> int:
        null_index: torch.Tensor = self.null_index  # type: ignore[assignment]
        return int(null_index.numel())

    def _experts(self) -> list[SimplexExpert]:
        return [e for e in self.experts if isinstance(e, SimplexExpert)]

    def alphas(self) -> torch.Tensor:
        raw = torch.sigmoid(self.alpha_logits)
        if self.bypass_clamp:
            return raw
        return raw.clamp(self.config.alpha_min, self.config.alpha_max)

    def set_alpha(self, alpha: float) -> None:
        with torch.no_grad():
            self.alpha_logits.fill_(logit(alpha))

    def modulate(
        self, residual: torch.Tensor, layer: int, token_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        active_index: torch.Tensor = self.active_index  # type: ignore[assignment]
        active = residual.index_select(-1, active_index)
        alphas = self.alphas()[layer].to(residual.dtype)
        combined = torch.ones_like(active)
        for alpha, expert in zip(alphas, self._experts(), strict=True):
            gate, _ = expert(active.to(expert.to_deform.weight.dtype))
            combined = combined * ((1 - alpha) + alpha * gate.to(residual.dtype))
        out = residual.clone()  # the null space is this copy, untouched
        out[..., active_index] = active * combined
        return out

    def health_report(self) -> dict[str, float]:
        """Diagnostics from the parameters alone (no forward)."""
        alphas = self.alphas().detach()
        report = {
            "alpha_mean": float(alphas.mean()),
            "alpha_min": float(alphas.min()),
            "alpha_max": float(alphas.max()),
            "parameters": float(sum(p.numel() for p in self.parameters())),
        }
        for layer in range(alphas.shape[0]):
            report[f"alpha_layer_{layer}"] = float(alphas[layer].mean())
        for expert in self._experts():
            template: torch.Tensor = expert.template  # type: ignore[assignment]
            report[f"template_vol2_k{expert.k}"] = float(cayley_menger_volume_sq(template)[1])
            report[f"deform_norm_k{expert.k}"] = float(expert.to_deform.weight.norm())
        return report

    def cv_check(
        self, embeddings: torch.Tensor, n_simplices: int = 500, seed: int = 0
    ) -> dict[str, float]:
        """Pentachoron CV of representations on the active dimensions, with its interval."""
        active_index: torch.Tensor = self.active_index  # type: ignore[assignment]
        result = simplex_cv(
            embeddings.index_select(-1, active_index).detach(), n_simplices=n_simplices, seed=seed
        )
        return {"cv": result.value, "ci_low": result.interval.low, "ci_high": result.interval.high}
