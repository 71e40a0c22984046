"""CLIP in open_clip's layout, read by tensor name (open_clip itself is never imported).

Layout, from open_clip's VisionTransformer and CLIP modules: `visual.conv1` (patch conv,
no bias), `visual.class_embedding` (d), `visual.positional_embedding` (patches + 1, d),
`visual.ln_pre`, per block `visual.transformer.resblocks.N.{ln_1, attn.in_proj_weight,
attn.in_proj_bias, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}` (and `ls_1.gamma`,
`ls_2.gamma` with layer scale), `visual.ln_post` and `visual.proj` (d, embed_dim), used as
`x @ proj`. The text tower has the same blocks under `transformer.resblocks.N`, with
`token_embedding`, `positional_embedding` (context, width), `ln_final`, `text_projection`
(width, embed_dim) and `logit_scale`.

The attention is nn.MultiheadAttention: `in_proj_weight` (3d, d) holds [W_q; W_k; W_v] one
above the other and `in_proj_bias` (3d) likewise; the adapter splits them into q, k, v.
The projections are read transposed, so every role reads (out, in) like nn.Linear.

Config: the open_clip model config (`embed_dim`, `vision_cfg`, optional `text_cfg`) with
`"model_type": "open_clip"`, as config.json. `write_random_init` builds a seeded replica
from such a config by writing the tensors under these names.

There is no transformers module (and open_clip itself does not import beside the CPU
torch wheel), so nothing that runs a forward applies: no symmetry catalogue, reference,
call census, windows or text encoding. The weights-only properties read every tower.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from terrain import family
from terrain.anatomy import (
    Anatomy,
    Dimensions,
    Rule,
    TensorSource,
    classify,
    rule,
    unclaimed,
)
from terrain.anatomy.config_fields import image_grid, optional_int, require_int, sub_config
from terrain.anatomy.shapes import ShapeKey, check_layer_count, check_shapes, split_fused

MODEL_TYPE = "open_clip"
WEIGHTS_FILE = "open_clip_model.safetensors"
_WB = r"\.(weight|bias)"
# open_clip's defaults (CLIPVisionCfg / CLIPTextCfg) for fields a config may leave out.
_HEAD_WIDTH = 64
_MLP_RATIO = 4.0
_TEXT_HEADS = 8
_CHANNELS = 3
PER_LAYER = ("q", "k", "v", "o", "mlp_up", "mlp_down", "norm_attn", "norm_mlp")
_WIDTH_VECTORS = (
    "norm_attn",
    "norm_mlp",
    "norm_final",
    "norm_embed",
    "layer_scale_attn",
    "layer_scale_mlp",
)


# ---------------------------------------------------------------------------------------
# The adapter
# ---------------------------------------------------------------------------------------


def _block_rules(prefix: str, stack: str) -> list[Rule]:
    blk = prefix + r"transformer\.resblocks\.(?P<layer>\d+)\."
    return [
        rule(blk + r"ln_1" + _WB, stack, "norm_attn"),
        rule(blk + r"attn\.in_proj_weight", stack, "qkv", kind="weight"),
        rule(blk + r"attn\.in_proj_bias", stack, "qkv", kind="bias"),
        rule(blk + r"attn\.out_proj" + _WB, stack, "o"),
        rule(blk + r"ls_1\.gamma", stack, "layer_scale_attn", kind="weight"),
        rule(blk + r"ln_2" + _WB, stack, "norm_mlp"),
        rule(blk + r"mlp\.c_fc" + _WB, stack, "mlp_up"),
        rule(blk + r"mlp\.c_proj" + _WB, stack, "mlp_down"),
        rule(blk + r"ls_2\.gamma", stack, "layer_scale_mlp", kind="weight"),
    ]


RULES = (
    rule(r"visual\.conv1\.weight", "vision", "patch_embed"),
    rule(r"visual\.class_embedding", "vision", "cls_token", kind="weight"),
    rule(r"visual\.positional_embedding", "vision", "embed_positions", kind="weight"),
    rule(r"visual\.ln_pre" + _WB, "vision", "norm_embed"),
    rule(r"visual\.ln_post" + _WB, "vision", "norm_final"),
    rule(r"visual\.proj", "head", "vision_proj", kind="weight"),
    *_block_rules(r"visual\.", "vision"),
    rule(r"token_embedding\.weight", "text", "embed_tokens"),
    rule(r"positional_embedding", "text", "embed_positions", kind="weight"),
    rule(r"ln_final" + _WB, "text", "norm_final"),
    rule(r"text_projection", "head", "text_proj", kind="weight"),
    rule(r"logit_scale", "head", "logit_scale", kind="weight"),
    *_block_rules("", "text"),
)
SKIP = (unclaimed(r"(visual\.)?attn_mask", "causal-mask buffer, not a parameter"),)
# Stored as (in, out) and used as x @ W: read transposed.
_TRANSPOSED = ("vision_proj", "text_proj")


def build(source: TensorSource, config: Mapping[str, Any]) -> Anatomy:
    name = source.name
    shapes = source.tensor_shapes()
    stored, left_out = classify(name, "open_clip", shapes, RULES, SKIP)
    roles = split_fused(
        name,
        shapes,
        [replace(r, transpose=r.role in _TRANSPOSED) for r in stored],
        "qkv",
        ("q", "k", "v"),
        what="nn.MultiheadAttention in_proj holds W_q, W_k, W_v one above the other",
    )
    towers = _towers(name, config)
    expected: dict[ShapeKey, tuple[int, ...]] = {}
    layers: dict[str, int] = {}
    for stack, t in towers.items():
        layers[stack] = t.layers
        expected.update(t.shapes(stack))
        per_layer = (*PER_LAYER, "layer_scale_attn", "layer_scale_mlp") if t.ls else PER_LAYER
        for role in per_layer:
            check_layer_count(name, roles, stack, role, t.layers)
    embed_dim = require_int(name, config, "embed_dim")
    expected["vision_proj"] = (embed_dim, towers["vision"].width)
    if "text" in towers:
        expected["text_proj"] = (embed_dim, towers["text"].width)
    expected["logit_scale"] = ()
    check_shapes(name, "open_clip", shapes, roles, expected)
    v = towers["vision"]
    dims = Dimensions(
        d_model=v.width,
        n_heads=v.heads,
        d_head=v.width // v.heads,
        d_ff=v.mlp_width,
        vocab_size=towers["text"].vocab if "text" in towers else 0,
        layers=layers,
    )
    return Anatomy("open_clip", source, dims, tuple(roles), left_out)


# ---------------------------------------------------------------------------------------
# Towers from the config
# ---------------------------------------------------------------------------------------


class _Tower:
    """One tower's widths, read from `vision_cfg` or `text_cfg` with open_clip's defaults."""

    def __init__(self, name: str, cfg: Mapping[str, Any], vision: bool) -> None:
        self.width = require_int(name, cfg, "width")
        self.layers = require_int(name, cfg, "layers")
        if vision:
            head_width = optional_int(name, cfg, "head_width", _HEAD_WIDTH)
            self.heads = max(1, self.width // head_width)
            self.patch = require_int(name, cfg, "patch_size")
            self.grid = image_grid(name, cfg, "image_size", self.patch)
            self.vocab = 0
            self.context = 0
        else:
            self.heads = optional_int(name, cfg, "heads", _TEXT_HEADS)
            self.vocab = require_int(name, cfg, "vocab_size")
            self.context = require_int(name, cfg, "context_length")
            self.patch = self.grid = 0
        ratio = cfg.get("mlp_ratio", _MLP_RATIO)
        self.mlp_width = int(self.width * float(ratio))
        ls = cfg.get("ls_init_value")
        self.ls: float | None = None if ls is None else float(ls)
        self.vision = vision

    def shapes(self, stack: str) -> dict[ShapeKey, tuple[int, ...]]:
        d, f = self.width, self.mlp_width
        out: dict[ShapeKey, tuple[int, ...]] = {
            **{(stack, r): (d, d) for r in ("q", "k", "v", "o")},
            (stack, "mlp_up"): (f, d),
            (stack, "mlp_down"): (d, f),
            **{(stack, r): (d,) for r in _WIDTH_VECTORS},
        }
        if self.vision:
            out[(stack, "patch_embed")] = (d, _CHANNELS, self.patch, self.patch)
            out[(stack, "cls_token")] = (d,)
            out[(stack, "embed_positions")] = (self.grid + 1, d)
        else:
            out[(stack, "embed_tokens")] = (self.vocab, d)
            out[(stack, "embed_positions")] = (self.context, d)
        return out


def _towers(name: str, config: Mapping[str, Any]) -> dict[str, _Tower]:
    towers = {"vision": _Tower(name, sub_config(name, config, "vision_cfg"), vision=True)}
    if config.get("text_cfg") is not None:
        towers["text"] = _Tower(name, sub_config(name, config, "text_cfg"), vision=False)
    return towers


# ---------------------------------------------------------------------------------------
# The layout as modules: tensor names, shapes and open_clip's initialisation
# ---------------------------------------------------------------------------------------


class _LayerScale(nn.Module):
    def __init__(self, width: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init * torch.ones(width))


class _Block(nn.Module):
    """open_clip's ResidualAttentionBlock (names and shapes; no forward needed here)."""

    def __init__(self, t: _Tower) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(t.width)
        self.attn = nn.MultiheadAttention(t.width, t.heads, batch_first=True)
        self.ls_1: nn.Module = nn.Identity() if t.ls is None else _LayerScale(t.width, t.ls)
        self.ln_2 = nn.LayerNorm(t.width)
        fc, proj = nn.Linear(t.width, t.mlp_width), nn.Linear(t.mlp_width, t.width)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", fc), ("gelu", nn.GELU()), ("c_proj", proj)]))
        self.ls_2: nn.Module = nn.Identity() if t.ls is None else _LayerScale(t.width, t.ls)


class _Transformer(nn.Module):
    def __init__(self, t: _Tower) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(_Block(t) for _ in range(t.layers))


class _Visual(nn.Module):
    def __init__(self, t: _Tower, embed_dim: int) -> None:
        super().__init__()
        scale = t.width**-0.5
        self.conv1 = nn.Conv2d(_CHANNELS, t.width, t.patch, stride=t.patch, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(t.width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(t.grid + 1, t.width))
        self.ln_pre = nn.LayerNorm(t.width)
        self.transformer = _Transformer(t)
        self.ln_post = nn.LayerNorm(t.width)
        self.proj = nn.Parameter(scale * torch.randn(t.width, embed_dim))


class OpenClipLayout(nn.Module):
    """The tensors of an open_clip CLIP checkpoint, with open_clip's initialisation."""

    def __init__(self, config: Mapping[str, Any], name: str = "open_clip") -> None:
        super().__init__()
        towers = _towers(name, config)
        embed_dim = require_int(name, config, "embed_dim")
        self.visual = _Visual(towers["vision"], embed_dim)
        text = towers.get("text")
        if text is None:
            return
        self.token_embedding = nn.Embedding(text.vocab, text.width)
        self.positional_embedding = nn.Parameter(torch.empty(text.context, text.width))
        self.transformer = _Transformer(text)
        self.ln_final = nn.LayerNorm(text.width)
        self.text_projection = nn.Parameter(torch.empty(text.width, embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))
        self._init_text(text)

    def _init_text(self, t: _Tower) -> None:
        """open_clip's CLIP.init_parameters for the text tower (the vision tower keeps
        PyTorch's module defaults, as open_clip's VisionTransformer does)."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        proj_std = (t.width**-0.5) * ((2 * t.layers) ** -0.5)
        attn_std = t.width**-0.5
        fc_std = (2 * t.width) ** -0.5
        for block in self.transformer.resblocks:
            assert isinstance(block, _Block)
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.get_parameter("c_fc.weight"), std=fc_std)
            nn.init.normal_(block.mlp.get_parameter("c_proj.weight"), std=proj_std)
        nn.init.normal_(self.text_projection, std=t.width**-0.5)


def write_random_init(config: Mapping[str, Any], seed: int, out: Path, label: str) -> None:
    """A seeded random-init open_clip checkpoint: config.json plus the named tensors."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    with torch.device("cpu"):
        model = OpenClipLayout(config, name=label)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(dict(config), indent=2), encoding="utf-8")


# ---------------------------------------------------------------------------------------
# The declaration
# ---------------------------------------------------------------------------------------


def tower_heads(config: Mapping[str, Any], stack: str) -> family.HeadCount | None:
    """Heads of a tower from its `{stack}_cfg`, with open_clip's defaults (as `_Tower`)."""
    oc = config.get(f"{stack}_cfg")
    if isinstance(oc, Mapping) and isinstance(oc.get("width"), int):
        width = int(oc["width"])
        if stack == "vision":
            heads = max(1, width // int(oc.get("head_width") or _HEAD_WIDTH))
        else:
            heads = int(oc.get("heads") or _TEXT_HEADS)
        return heads, heads, width // heads, f"config.json {stack}_cfg"
    return None


NO_MODULE = "open_clip has no transformers module: it is read by tensor names"
_TYPES = (MODEL_TYPE,)
FAMILY = family.register(
    family.Family(
        name="open_clip",
        model_types=_TYPES,
        anatomy=build,
        norms=family.Norms(
            "pre-LN LayerNorm (gain and bias): ln_1 before attention, ln_2 before the MLP, "
            "each branch scaled per channel (ls_1/ls_2) when the config sets ls_init_value; "
            "vision: ln_pre on the embeddings, ln_post last; text: ln_final"
        ),
        heads=tower_heads,
        stack_counts=family.per_type(
            _TYPES, family.Absent(NO_MODULE + "; no module to cut into windows")
        ),
        symmetry=family.Absent(NO_MODULE + "; symmetries are measured on a module's output"),
        reference=family.Absent(NO_MODULE + "; there is no library block to compare with"),
        census=family.per_type(_TYPES, family.Absent(NO_MODULE + "; there is no forward to count")),
        text=family.per_type(_TYPES, family.Absent(NO_MODULE + "; no module to encode text with")),
        module=family.NamedLayout(
            NO_MODULE,
            module=lambda config, name: OpenClipLayout(config, name=name),
            write_random_init=write_random_init,
        ),
    )
)
