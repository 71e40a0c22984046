"""Canonical roles of a checkpoint's tensors, shared by every family adapter.

An adapter maps each tensor name to a `TensorRole` (stack, layer, role, kind)
or lists it as deliberately unclaimed with a reason. Nothing is skipped
silently: a name that is neither is an AnatomyError naming the tensor.

Stacks: "encoder", "decoder" (a decoder-only LM's layers too), "vision" and "text"
(the towers of CLIP-like models and of a VLM's image encoder), "embeddings" (tables
shared by the whole model) and "head" (task and projection heads). Per-layer roles
carry the layer index; a stack's own embeddings and final norm carry none.

Roles, and the families they appear in:

    q k v o                      self-attention (every family; Qwen3.5: its full-attention
                                 layers only; GPT-2, open_clip and the Qwen3.5 vision tower
                                 store q, k and v fused and are split on read)
    xq xk xv xo                  cross-attention (T5 decoder)
    q_norm k_norm                RMS gain on queries/keys before RoPE: per head, size d_head
                                 (Qwen3, Qwen3.5), or over all heads at once, size
                                 n_heads·d_head and n_kv_heads·d_head (OLMo-3)
    attn_gate                    Qwen3.5 full attention: per-head sigmoid output gate, stored
                                 interleaved with q in q_proj (q reads rows 0:d_head of each
                                 2·d_head block, attn_gate the other half)
    linear_q linear_k linear_v   Qwen3.5 gated delta net (linear attention) layers: split
                                 from the fused in_proj_qkv; never returned as q/k/v
    linear_gate linear_beta      in_proj_z (output gate), in_proj_b (update rate β),
    linear_decay                 in_proj_a (decay input)
    linear_conv linear_norm      depthwise causal conv over the q/k/v channels; gated RMS
                                 norm of the output (per value head)
    linear_dt_bias linear_a_log  decay parameters: softplus bias and log of A
    linear_o                     out_proj of the linear-attention mixer
    mlp_up mlp_gate mlp_down     feed-forward (mlp_gate in gated MLPs: T5 v1.1/UMT5 wi_0,
                                 Llama/Qwen/OLMo gate_proj, DINOv2 SwiGLU first half)
    norm_attn norm_mlp           pre-norms of the attention and MLP sublayers (BERT: the
                                 post-sublayer LayerNorms, as BERT is post-LN)
    norm_cross                   T5 decoder cross-attention pre-norm
    norm_attn_post norm_mlp_post OLMo-3 post-norms on the attention/MLP outputs
    norm_final norm_embed        closing norm of a stack; norm on the embeddings (BERT
                                 LayerNorm, CLIP pre_layrnorm, open_clip ln_pre)
    layer_scale_attn             per-channel residual scales (DINOv2 layer_scale1/2,
    layer_scale_mlp              open_clip ls_1/ls_2)
    embed_tokens embed_positions token and learned position tables; embed_token_type (BERT)
    embed_token_type
    patch_embed cls_token        image patch projection (conv) and class token (DINOv2, CLIP,
                                 open_clip, Qwen3.5 vision)
    position_bias                T5 relative-position bias (buckets x heads)
    merger_norm merger_up        Qwen3.5 vision-to-text patch merger
    merger_down
    lm_head                      output projection to the vocabulary (when stored untied)
    vision_proj text_proj        CLIP / open_clip projections into the joint space
    logit_scale                  CLIP / open_clip contrastive temperature
    pooler lm_transform lm_norm  BERT task heads; classifier (DINOv2)
    lm_bias nsp classifier

Fused tensors: one stored tensor may give several roles. A `TensorRole` then says how
its role is taken out of the stored tensor (`transpose`, then `rows`, optionally within
every `period` rows); `Anatomy.read` applies it, so every weight reads (out, in) like
`nn.Linear`. The census counts each stored tensor once and each role's slice apart.
The splits of fused tensors and the checks against the config are in anatomy/shapes.py.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from terrain.errors import AnatomyError

# Canonical role names. Self-attention q/k/v/o, cross-attention xq/xk/xv/xo.
SELF_ATTENTION = ("q", "k", "v", "o")
CROSS_ATTENTION = ("xq", "xk", "xv", "xo")
LINEAR_ATTENTION = ("linear_q", "linear_k", "linear_v", "linear_o")


class TensorSource(Protocol):
    """What an Anatomy needs from a checkpoint: names, shapes and lazy reads."""

    @property
    def name(self) -> str: ...

    def tensor_shapes(self) -> Mapping[str, tuple[int, ...]]: ...

    def tensor(self, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor: ...


@dataclass(frozen=True)
class TensorRole:
    """One tensor's place in the architecture, and how to take it out of the stored tensor.

    A plain tensor is read as stored. A fused one (GPT-2 `c_attn`, open_clip
    `in_proj_weight`) gives several roles: the stored tensor is transposed when
    `transpose` (Conv1D stores (in, out)), then rows [start, stop) are taken along axis 0;
    with `period`, the rows are taken within every block of `period` rows (per-head
    interleaving, e.g. Qwen3.5's q_proj holding [q_h | gate_h] for each head h).
    """

    tensor: str
    stack: str  # "encoder", "decoder", "vision", "text", "embeddings", "head"
    role: str  # canonical role, e.g. "q", "mlp_up", "embed_tokens"
    kind: str  # "weight" or "bias"
    layer: int | None = None
    transpose: bool = False
    rows: tuple[int, int] | None = None
    period: int | None = None

    @property
    def is_view(self) -> bool:
        return self.transpose or self.rows is not None

    def shape(self, stored: Sequence[int]) -> tuple[int, ...]:
        """The role's shape, given the stored tensor's shape."""
        dims = list(stored)
        if self.transpose and len(dims) >= 2:
            dims[0], dims[1] = dims[1], dims[0]
        if self.rows is not None and dims:
            start, stop = self.rows
            blocks = dims[0] // self.period if self.period else 1
            dims[0] = (stop - start) * blocks
        return tuple(dims)

    def take(self, stored: torch.Tensor) -> torch.Tensor:
        """The role's values out of the stored tensor (a copy only when it is a view)."""
        out = stored
        if self.transpose and out.dim() >= 2:
            out = out.transpose(0, 1)
        if self.rows is not None:
            start, stop = self.rows
            if self.period:
                rest = out.shape[1:]
                out = out.reshape(-1, self.period, *rest)[:, start:stop].reshape(-1, *rest)
            else:
                out = out[start:stop]
        return out.contiguous() if self.is_view else out

    def describe_view(self) -> str:
        """How the role is taken out of the stored tensor, in words ('' when read as stored)."""
        parts = []
        if self.transpose:
            parts.append("transposed")
        if self.rows is not None:
            where = f"rows {self.rows[0]}:{self.rows[1]}"
            parts.append(f"{where} of every {self.period}" if self.period else where)
        return ", ".join(parts)


@dataclass(frozen=True)
class Dimensions:
    """What the config says the checkpoint must contain.

    Two-tower models (CLIP) give the widths of the vision tower here; every stack's
    shapes are still checked against its own tower's config.
    """

    d_model: int
    n_heads: int
    d_head: int
    d_ff: int
    vocab_size: int
    layers: Mapping[str, int]  # stack -> number of layers
    n_kv_heads: int = 0  # key/value heads (GQA); 0 means n_heads and is filled in
    # stack -> one type per layer ("full_attention", "sliding_attention",
    # "linear_attention"), only where the config has them
    layer_types: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.n_kv_heads == 0:
            object.__setattr__(self, "n_kv_heads", self.n_heads)


@dataclass(frozen=True)
class Rule:
    """A regex over tensor names; named groups `layer` (int) and `role` (str) fill the role."""

    pattern: re.Pattern[str]
    stack: str
    role: str | Callable[[re.Match[str]], str]
    kind: str | None = None  # None: taken from the name's last component


def rule(
    pattern: str,
    stack: str,
    role: str | Callable[[re.Match[str]], str],
    *,
    kind: str | None = None,
) -> Rule:
    return Rule(re.compile(pattern), stack, role, kind)


@dataclass(frozen=True)
class Unclaimed:
    """A name pattern deliberately not measured, and why."""

    pattern: re.Pattern[str]
    reason: str


def unclaimed(pattern: str, reason: str) -> Unclaimed:
    return Unclaimed(re.compile(pattern), reason)


@dataclass(frozen=True)
class Anatomy:
    """A checkpoint's tensors sorted into canonical roles, with lazy access to their values."""

    family: str
    source: TensorSource
    dims: Dimensions
    roles: tuple[TensorRole, ...]
    unclaimed: Mapping[str, str]
    _by_role: dict[tuple[str, str, str], list[TensorRole]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for r in self.roles:
            self._by_role.setdefault((r.stack, r.role, r.kind), []).append(r)
        for entries in self._by_role.values():
            entries.sort(key=lambda r: -1 if r.layer is None else r.layer)

    @property
    def model_name(self) -> str:
        return self.source.name

    def stacks(self) -> list[str]:
        return sorted({r.stack for r in self.roles if r.layer is not None})

    def layers(self, stack: str, role: str, kind: str = "weight") -> list[TensorRole]:
        """Per-layer tensors of one role in one stack, in layer order (empty when absent)."""
        return list(self._by_role.get((stack, role, kind), []))

    def find(self, role: str, kind: str = "weight") -> list[TensorRole]:
        """Every tensor with this role, all stacks, stack then layer order."""
        return [
            r for s in sorted({k[0] for k in self._by_role}) for r in self.layers(s, role, kind)
        ]

    def layer_type(self, stack: str, layer: int) -> str | None:
        """The config's type of one layer ("full_attention", ...), None where it has none."""
        types = self.dims.layer_types.get(stack)
        return types[layer] if types is not None and 0 <= layer < len(types) else None

    def token_embedding(self) -> TensorRole:
        # A shared table lives in stack "embeddings"; per-stack copies (tied) come after it.
        found = self.layers("embeddings", "embed_tokens") or self.find("embed_tokens")
        if not found:
            raise AnatomyError(f"model {self.model_name!r}: no token-embedding tensor found")
        return found[0]

    def read(self, entry: TensorRole, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The role's values: the stored tensor, or its slice/transpose for a fused one."""
        return entry.take(self.source.tensor(entry.tensor, dtype))

    def census(self) -> dict[str, Any]:
        """Counts of every tensor and parameter by role, plus the unclaimed list with reasons.

        `tensors` and `claimed` count stored tensors (a fused tensor once); `by_role`
        counts each role's slices, so a fused QKV shows in q, k and v.
        """
        shapes = self.source.tensor_shapes()
        by_role: Counter[str] = Counter()
        params: Counter[str] = Counter()
        for r in self.roles:
            key = f"{r.stack}.{r.role}.{r.kind}"
            by_role[key] += 1
            params[key] += math.prod(r.shape(shapes[r.tensor]))
        out: dict[str, Any] = {
            "family": self.family,
            "tensors": len(shapes),
            "claimed": len({r.tensor for r in self.roles}),
            "unclaimed": dict(sorted(self.unclaimed.items())),
            "parameters": sum(math.prod(s) for s in shapes.values()),
            "layers": dict(self.dims.layers),
            "heads": self.dims.n_heads,
            "kv_heads": self.dims.n_kv_heads,
            "d_model": self.dims.d_model,
            "d_head": self.dims.d_head,
            "d_ff": self.dims.d_ff,
            "by_role": {
                k: {"tensors": by_role[k], "parameters": params[k]} for k in sorted(by_role)
            },
        }
        if self.dims.layer_types:
            out["layer_types"] = {k: list(v) for k, v in sorted(self.dims.layer_types.items())}
        return out


def classify(
    model_name: str,
    family: str,
    names: Iterable[str],
    rules: Sequence[Rule],
    skip: Sequence[Unclaimed],
    prefixes: Sequence[str] = (),
) -> tuple[list[TensorRole], dict[str, str]]:
    """Sort every name into a role or the unclaimed list; raise on any name that fits neither."""
    roles: list[TensorRole] = []
    left_out: dict[str, str] = {}
    strange: list[str] = []
    for name in names:
        bare = _strip_prefix(name, prefixes)
        placed = _match_rule(name, bare, rules)
        if placed is not None:
            roles.append(placed)
            continue
        reason = next((u.reason for u in skip if u.pattern.fullmatch(bare)), None)
        if reason is None:
            strange.append(name)
        else:
            left_out[name] = reason
    if strange:
        shown = ", ".join(repr(s) for s in sorted(strange)[:8])
        more = f" and {len(strange) - 8} more" if len(strange) > 8 else ""
        raise AnatomyError(
            f"model {model_name!r}: the {family} adapter cannot place tensor(s) {shown}{more}; "
            "they fit no known role of this family (wrong --family, or an unsupported variant)"
        )
    return roles, left_out


def _strip_prefix(name: str, prefixes: Sequence[str]) -> str:
    for p in prefixes:
        if name.startswith(p):
            return name[len(p) :]
    return name


def _match_rule(name: str, bare: str, rules: Sequence[Rule]) -> TensorRole | None:
    for r in rules:
        m = r.pattern.fullmatch(bare)
        if m is None:
            continue
        role = r.role(m) if callable(r.role) else r.role
        kind = r.kind or bare.rsplit(".", 1)[-1]
        layer = m.groupdict().get("layer")
        return TensorRole(name, r.stack, role, kind, None if layer is None else int(layer))
    return None
