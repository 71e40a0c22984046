"""The QK similarity manifold: the bilinear forms that attention scores are made of.

Two forms are measured per layer (W_Q, W_K stored (out, in) like nn.Linear; GQA key
heads are repeated to their query heads first):

1. The seed's form M = W_Q·W_Kᵀ (n × n, n = n_heads·d_head): the signs of the
   eigenvalues of its symmetric part (M + Mᵀ)/2, and its symmetry deviation
   ‖M − Mᵀ‖/‖M‖. The seed reports the positive-eigenvalue fraction per layer ("the
   cross-attention QK balance is locked at 0.500"). Two facts limit what that shows:
   - a random product has balance 0.5 on average: with W_K independent of W_Q and
     symmetric in distribution (any zero-mean init), W_K → −W_K maps M to −M, swapping
     positive and negative eigenvalues, and eigenvalue counts barely fluctuate. The
     random-init replica's balance is the null beside every value;
   - with grouped keys (GQA) M has rank at most r = 2·n_kv_heads·d_head: writing
     sym(M) = ½·[X Y]·J·[X Y]ᵀ with X, Y of r/2 columns, Sylvester's law of inertia gives
     exactly r/2 positive and r/2 negative eigenvalues whenever r ≤ n (two or more
     query heads per key head) and [X Y] has full rank: the balance over the nonzero
     eigenvalues (`balance`) is forced to 0.5, trained or not;
   - M lives in head space, where the attention gauge acts: W_Q^h → A·W_Q^h,
     W_K^h → A^{-T}·W_K^h leaves every score unchanged for any invertible per-head A
     (BERT/T5), but changes the symmetric part of M (it is invariant under orthogonal A
     only). The per-head diagonal blocks W_Q^h·W_K^hᵀ are measured as well.

2. The form on the residual stream, per head: B_h = W_Q^hᵀ·W_K^h (d_model × d_model),
   score(x_i, x_j) = x_iᵀ·B_h·x_j / √d_head (before RoPE and q/k norms, where present;
   for cross-attention x_i and x_j live in different streams). B_h is gauge invariant.
   With A_h = [W_Q^h; W_K^h] (2·d_head × d_model), sym(B_h) = ½·A_hᵀ·J·A_h with
   J = [[0, I], [I, 0]], so by Sylvester's law of inertia, whenever A_h has full rank
   2·d_head, sym(B_h) has exactly d_head positive and d_head negative eigenvalues (the
   rest are 0): a sign balance of 0.5 is forced for every full-rank head, trained or
   not. What training can move is the eigenvalue *mass*: the positive share
   Σλ⁺/Σ|λ| (0.5 on average at random init; above 0.5 for heads that match a token to
   itself). Computed exactly from the QR factor of A_hᵀ: with A_hᵀ = Q·R and
   R = [R_q | R_k], B_h = Q·(R_q·R_kᵀ)·Qᵀ, so every nonzero spectral quantity of B_h is
   that of the small matrix C_h = R_q·R_kᵀ (2·d_head square).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from terrain.measures.kernels import as_float64

# Eigenvalues smaller than this share of the largest |λ| count as 0 (float64 rounding).
ZERO_SHARE = 1e-10
TOP = 3


@dataclass(frozen=True)
class QKLayer:
    stack: str
    layer: int
    cross: bool  # cross-attention (xq, xk)
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_model: int
    dim: int  # n = n_heads·d_head, the size of the seed's form
    n_positive: int  # sym(W_Q W_Kᵀ) eigenvalues above zero
    n_negative: int
    symmetry_deviation: float  # ‖M − Mᵀ‖/‖M‖
    top_eigenvalues: tuple[float, ...]
    # per head
    block_positive: NDArray[np.float64]  # positive fraction of sym(W_Q^h W_K^hᵀ)
    block_symmetry_deviation: NDArray[np.float64]
    residual_positive: NDArray[np.int64]  # positive eigenvalues of sym(B_h)
    residual_negative: NDArray[np.int64]
    residual_positive_mass: NDArray[np.float64]  # Σλ⁺/Σ|λ| of sym(B_h)
    residual_symmetry_deviation: NDArray[np.float64]  # ‖B − Bᵀ‖/‖B‖
    residual_stable_rank: NDArray[np.float64]  # Σσ²/σ_max² of B_h
    eigenvalues: NDArray[np.float64]  # of sym(M), descending (for plots)

    @property
    def positive_fraction(self) -> float:
        """The seed's balance: positive eigenvalues of sym(W_Q W_Kᵀ) over its size."""
        return self.n_positive / self.dim

    @property
    def balance(self) -> float:
        """Positive over nonzero eigenvalues of sym(W_Q W_Kᵀ): the positive fraction when the
        form has full rank; GQA repeats key heads, so its form has rank at most
        2·n_kv_heads·d_head and the seed's fraction over `dim` would count the zeros."""
        nonzero = self.n_positive + self.n_negative
        return self.n_positive / nonzero if nonzero else float("nan")

    @property
    def residual_balance(self) -> NDArray[np.float64]:
        """Per head: positive / nonzero eigenvalues of sym(B_h); forced 0.5 at full rank."""
        nonzero = self.residual_positive + self.residual_negative
        return np.where(nonzero > 0, self.residual_positive / np.maximum(nonzero, 1), np.nan)

    @property
    def rank_deficient_heads(self) -> int:
        """Heads whose [W_Q^h; W_K^h] has rank below 2·d_head (the inertia theorem's premise)."""
        full = min(2 * self.d_head, self.d_model)
        nonzero = self.residual_positive + self.residual_negative
        return int(np.sum(nonzero < full))

    def as_dict(self) -> dict[str, object]:
        return {
            "stack": self.stack,
            "layer": self.layer,
            "cross": self.cross,
            "dim": self.dim,
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
            "positive_fraction": self.positive_fraction,
            "balance": self.balance,
            "symmetry_deviation": self.symmetry_deviation,
            "top_eigenvalues": list(self.top_eigenvalues),
            "heads": [
                {
                    "head": h,
                    "block_positive_fraction": float(self.block_positive[h]),
                    "block_symmetry_deviation": float(self.block_symmetry_deviation[h]),
                    "residual_positive": int(self.residual_positive[h]),
                    "residual_negative": int(self.residual_negative[h]),
                    "residual_positive_mass": float(self.residual_positive_mass[h]),
                    "residual_symmetry_deviation": float(self.residual_symmetry_deviation[h]),
                    "residual_stable_rank": float(self.residual_stable_rank[h]),
                }
                for h in range(self.n_heads)
            ],
        }


def _relative_antisymmetry(m: torch.Tensor) -> torch.Tensor:
    """‖M − Mᵀ‖_F / ‖M‖_F over the last two axes (NaN for a zero matrix)."""
    num = torch.linalg.matrix_norm(m - m.transpose(-1, -2))
    den = torch.linalg.matrix_norm(m)
    return torch.where(den > 0, num / torch.where(den > 0, den, 1.0), torch.nan)


def _signs(ev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and negative counts along the last axis, zeros (relative) excluded."""
    scale = ev.abs().amax(dim=-1, keepdim=True)
    tol = ZERO_SHARE * scale
    return (ev > tol).sum(dim=-1), (ev < -tol).sum(dim=-1)


def qk_working_bytes(n_heads: int, n_kv_heads: int, d_head: int, d_model: int) -> int:
    """Peak float64 working set of `qk_layer`: W_Q and W_K, the form M, its symmetric part
    and the eigensolver's copy, then a batch of heads' QR factors."""
    n, r = n_heads * d_head, n_kv_heads * d_head
    return 8 * (n * d_model + r * d_model + 3 * n * n + _HEAD_BATCH * 4 * d_head * d_model)


# Heads whose residual form is factored at once: bounds the (heads, d_model, 2·d_head) stack.
_HEAD_BATCH = 8


def _sym_eigenvalues(p: torch.Tensor, m: torch.Tensor, group: int, d_head: int) -> torch.Tensor:
    """Eigenvalues (descending) of sym(M) for M = P·Eᵀ, E repeating each key head's columns
    for its `group` query heads (M's column block h is P's block h // group).

    Without GQA this is eigvalsh of the n × n symmetric part. With groups of three or more,
    sym(M) = ½·[P E]·J·[P E]ᵀ has rank at most 2r (r = P's columns), so from the QR factor
    [P E] = U·R its nonzero eigenvalues are those of the 2r × 2r matrix ½·R·J·Rᵀ: a 4096-wide
    form with eight key heads of 128 is solved at 2048, an eighth of the work.
    """
    n, r = p.shape
    if 2 * r >= n:
        sym = m + m.T
        sym *= 0.5
        full: torch.Tensor = torch.linalg.eigvalsh(sym).flip(0)
        return full
    e = torch.zeros(n, r, dtype=p.dtype, device=p.device)
    rows = torch.arange(n, device=p.device)
    e[rows, (rows // (group * d_head)) * d_head + rows % d_head] = 1.0
    rr = torch.linalg.qr(torch.cat([p, e], dim=1), mode="r").R
    j = torch.zeros(2 * r, 2 * r, dtype=p.dtype, device=p.device)
    j[:r, r:] = torch.eye(r, dtype=p.dtype, device=p.device)
    j[r:, :r] = torch.eye(r, dtype=p.dtype, device=p.device)
    small = 0.5 * (rr @ j @ rr.T)
    small = 0.5 * (small + small.T)  # exactly symmetric for the solver
    nonzero = torch.linalg.eigvalsh(small)
    zeros = torch.zeros(n - 2 * r, dtype=p.dtype, device=p.device)
    out: torch.Tensor = torch.cat([nonzero, zeros]).sort(descending=True).values
    return out


def qk_layer(
    w_q: torch.Tensor,
    w_k: torch.Tensor,
    *,
    n_heads: int,
    n_kv_heads: int,
    d_head: int,
    stack: str = "",
    layer: int = 0,
    cross: bool = False,
) -> QKLayer:
    """Both QK forms of one attention layer, in float64 on the tensors' device."""
    if w_q.shape[0] != n_heads * d_head or w_k.shape[0] != n_kv_heads * d_head:
        raise ValueError(
            f"{stack} layer {layer}: W_Q {list(w_q.shape)} and W_K {list(w_k.shape)} do not "
            f"split into {n_heads} query and {n_kv_heads} key heads of {d_head}"
        )
    if n_heads % n_kv_heads:
        raise ValueError(f"{n_heads} query heads do not share {n_kv_heads} key heads evenly")
    d_model = w_q.shape[1]
    group = n_heads // n_kv_heads
    q = as_float64(w_q).reshape(n_heads, d_head, d_model)
    k0 = as_float64(w_k).reshape(n_kv_heads, d_head, d_model)

    # 1. The seed's form in head space: M = W_Q·K̃ᵀ, K̃ the key head of each query head.
    p = q.reshape(-1, d_model) @ k0.reshape(-1, d_model).T  # (n, r)
    n = n_heads * d_head
    m = p.reshape(n, n_kv_heads, 1, d_head).expand(n, n_kv_heads, group, d_head).reshape(n, n)
    ev = _sym_eigenvalues(p, m, group, d_head)
    del p
    pos, neg = _signs(ev)
    deviation = float(_relative_antisymmetry(m))
    blocks = m.reshape(n_heads, d_head, n_heads, d_head).diagonal(dim1=0, dim2=2)
    blocks = blocks.permute(2, 0, 1).contiguous()  # (heads, d_head, d_head): W_Q^h W_K^hᵀ
    del m
    block_ev = torch.linalg.eigvalsh(0.5 * (blocks + blocks.transpose(1, 2)))
    block_pos, _ = _signs(block_ev)

    # 2. The residual-stream form, through the QR factor of [W_Q^h; W_K^h]ᵀ, a batch of
    # heads at a time.
    parts: list[tuple[torch.Tensor, ...]] = []
    for start in range(0, n_heads, _HEAD_BATCH):
        heads = torch.arange(start, min(n_heads, start + _HEAD_BATCH), device=q.device)
        a_t = torch.cat([q[heads], k0[heads // group]], dim=1).transpose(1, 2)
        r = torch.linalg.qr(a_t, mode="r").R  # (heads, min(d_model, 2·d_head), 2·d_head)
        c = r[:, :, :d_head] @ r[:, :, d_head:].transpose(1, 2)
        c_ev = torch.linalg.eigvalsh(0.5 * (c + c.transpose(1, 2)))
        sv2 = torch.linalg.svdvals(c).square()
        parts.append((c_ev, sv2, _relative_antisymmetry(c)))
    c_ev = torch.cat([x[0] for x in parts])
    sv2 = torch.cat([x[1] for x in parts])
    c_dev = torch.cat([x[2] for x in parts])
    r_pos, r_neg = _signs(c_ev)
    absolute = c_ev.abs().sum(dim=1)
    mass = torch.where(
        absolute > 0, c_ev.clamp_min(0).sum(dim=1) / absolute.clamp_min(1e-300), torch.nan
    )
    stable = torch.where(sv2[:, 0] > 0, sv2.sum(dim=1) / sv2[:, 0].clamp_min(1e-300), torch.nan)

    return QKLayer(
        stack=stack,
        layer=layer,
        cross=cross,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        d_head=d_head,
        d_model=d_model,
        dim=n,
        n_positive=int(pos),
        n_negative=int(neg),
        symmetry_deviation=deviation,
        top_eigenvalues=tuple(float(x) for x in ev[:TOP].cpu()),
        block_positive=(block_pos.to(torch.float64) / d_head).cpu().numpy(),
        block_symmetry_deviation=_relative_antisymmetry(blocks).cpu().numpy(),
        residual_positive=r_pos.cpu().numpy().astype(np.int64),
        residual_negative=r_neg.cpu().numpy().astype(np.int64),
        residual_positive_mass=mass.cpu().numpy(),
        residual_symmetry_deviation=c_dev.cpu().numpy(),
        residual_stable_rank=stable.cpu().numpy(),
        eigenvalues=ev.cpu().numpy(),
    )
