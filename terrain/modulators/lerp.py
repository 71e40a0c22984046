"""The LERP modulator (notebook section 7): a per-token geometric target mixed into the
residual stream, out = (1 − a)·h + a·proj(geo_embed(token_ids)), a = sigmoid(logit).

At a = 0 the arithmetic is exact: (1 − 0)·h = h and 0·target = 0 for finite targets, so
the modulated stream equals the plain one bit for bit.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from terrain.measures.layer_geometry import participation_ratio
from terrain.measures.simplex import simplex_cv


def logit(alpha: float) -> float:
    """The logit whose sigmoid is `alpha`, exactly 0 and 1 at the ends (±inf)."""
    if alpha <= 0.0:
        return -math.inf  # sigmoid(-inf) == 0.0 exactly
    if alpha >= 1.0:
        return math.inf
    return math.log(alpha / (1.0 - alpha))


class LerpModulator(nn.Module):
    def __init__(
        self,
        d_model: int,
        vocab_size: int,
        *,
        n_geometric_dims: int = 64,
        initial_alpha: float = 0.01,
        n_layers: int = 1,
        per_layer_alpha: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.geo_embed = nn.Embedding(vocab_size, n_geometric_dims)
        self.proj = nn.Linear(n_geometric_dims, d_model, bias=False)
        with torch.no_grad():
            self.geo_embed.weight.normal_(generator=gen)
            self.proj.weight.normal_(std=0.01, generator=gen)  # small: a nudge, not a rewrite
        shape = (n_layers,) if per_layer_alpha else ()
        self.alpha_logit = nn.Parameter(torch.full(shape, logit(initial_alpha)))

    def set_alpha(self, alpha: float) -> None:
        """Set every alpha (0 gives an exact no-op)."""
        with torch.no_grad():
            self.alpha_logit.fill_(logit(alpha))

    def alpha(self, layer: int) -> torch.Tensor:
        logit = self.alpha_logit[layer] if self.alpha_logit.dim() else self.alpha_logit
        return torch.sigmoid(logit)

    def init_from_simplices(self, vertices: torch.Tensor) -> None:
        """Embeddings from simplex vertices ([vocab, n_vertices, dims] summed, or [vocab, dims]),
        projected onto the unit sphere: the geometry is in the directions."""
        pooled = vertices.sum(dim=1) if vertices.dim() == 3 else vertices
        with torch.no_grad():
            unit = pooled / pooled.norm(dim=1, keepdim=True).clamp_min(1e-8)
            self.geo_embed.weight.copy_(unit[: self.geo_embed.num_embeddings])

    def init_from_cosine_target(self, target: torch.Tensor) -> None:
        """Embeddings whose pairwise cosines approximate `target` (vocab × vocab): the top
        eigenvectors scaled by sqrt(eigenvalue), then normalised."""
        dims = self.geo_embed.embedding_dim
        values, vectors = torch.linalg.eigh(target.to(torch.float64))
        top = torch.argsort(values, descending=True)[:dims]
        emb = vectors[:, top] * values[top].clamp_min(0).sqrt()
        self.init_from_simplices(emb.to(self.geo_embed.weight.dtype))

    def modulate(
        self, residual: torch.Tensor, layer: int, token_ids: torch.Tensor | None
    ) -> torch.Tensor:
        if token_ids is None:
            raise ValueError("the LERP modulator needs token ids (text input)")
        a = self.alpha(layer).to(residual.dtype)
        target = self.proj(self.geo_embed(token_ids).to(self.proj.weight.dtype)).to(residual.dtype)
        mixed: torch.Tensor = (1 - a) * residual + a * target
        return mixed

    def health(self, n_simplices: int = 500, seed: int = 0) -> dict[str, float]:
        """Geometry of the embedding table: cosines, norms, participation ratio, simplex CV."""
        W = self.geo_embed.weight.detach().to(torch.float64)
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randperm(W.shape[0], generator=gen)[:2000]
        unit = W[idx] / W[idx].norm(dim=1, keepdim=True).clamp_min(1e-12)
        cos = unit @ unit.T
        upper = cos[torch.triu(torch.ones_like(cos, dtype=torch.bool), diagonal=1)]
        pr = participation_ratio(W)
        return {
            "cos_mean": float(upper.mean()),
            "cos_std": float(upper.std()),
            "norm_mean": float(W.norm(dim=1).mean()),
            "participation_ratio": pr,
            "pr_over_dim": pr / W.shape[1],
            "simplex_cv": simplex_cv(W, n_simplices=n_simplices, seed=seed).value,
            "alpha_mean": float(torch.sigmoid(self.alpha_logit.detach()).mean()),
        }
