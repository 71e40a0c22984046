"""Forward windows: a few of a model's own blocks, built as a model of their own.

A forward property (a symmetry, the reference forward, the call census, the modulators)
needs a module to run. A whole 7B model in float64 takes 58 GB, so above
`WHOLE_MODEL_PARAMETERS` the properties run on windows instead: a config cut to a few
blocks of each stack (renumbered from 0), loaded with the checkpoint's own tensors of those
blocks, in the dtype the forward budget allows. The window keeps the model's token table
only for the tokens its inputs use (every other row is never looked up, and the LM head
keeps the same rows, so the window's logits are those of the model on those tokens), and
T5's position-bias table, which block 0 of each stack computes for all, goes to the
window's first block. A window is itself a Hugging Face checkpoint folder, so the library
builds, names and ties it as it would the model; every forward property that holds for a
model of this architecture holds for it, and what it tests are the model's own weights.

Which blocks (`sample_layers`): the first, the middle and the last of each stack, plus the
first of each layer type (a hybrid stack's full-attention blocks, OLMo-3's sliding
ones) — every block below `WHOLE_MODEL_PARAMETERS`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from terrain.anatomy import Anatomy, TensorRole, build_anatomy
from terrain.atomic import build_folder
from terrain.checkpoint import Checkpoint
from terrain.errors import TerrainError
from terrain.family import StackCount, family_of_type, require
from terrain.null.init_source import config_key

# Up to this many parameters a forward property runs the whole model (BERT-base's 110M in
# float64 and one transformed copy take 1.8 GB); above it, windows.
WHOLE_MODEL_PARAMETERS = 150_000_000
# Roles whose one table is computed at block 0 of a stack and reused by every block.
STACK_SHARED_ROLES = frozenset({"position_bias"})
# Roles indexed by token id: sliced to the window's tokens.
VOCAB_ROLES = frozenset({"embed_tokens", "lm_head", "lm_bias"})
_CONTAINER = re.compile(r"(?:^|\.)(?:layers|layer|block|blocks|h|resblocks)\.(\d+)\.")
_SPECIAL_IDS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")
FORMAT = 1


class NotWindowableError(TerrainError):
    """The model's layout cannot be cut into windows (the message says why)."""


def stack_counts(config: Mapping[str, Any]) -> dict[str, StackCount]:
    """Anatomy stack -> where the config counts its blocks, as its family declares it."""
    model_type = config.get("model_type")
    family = family_of_type(model_type)
    counts = require(
        None if family is None else family.counts_for(str(model_type)),
        NotWindowableError,
        f"no block counts known for model_type {model_type!r}",
    )
    return dict(counts)


def _section(config: Mapping[str, Any], where: StackCount) -> Mapping[str, Any]:
    if where.section is None:
        return config
    section = config.get(where.section)
    if not isinstance(section, Mapping):
        raise NotWindowableError(f"config has no {where.section!r} section")
    return section


def sample_layers(anatomy: Anatomy, config: Mapping[str, Any]) -> dict[str, list[int]]:
    """The blocks a window sample covers, per stack (see the module docstring)."""
    counts = stack_counts(config)
    out: dict[str, list[int]] = {}
    for stack, where in counts.items():
        n = anatomy.dims.layers.get(stack)
        if not n:
            continue
        chosen = {0, n // 2, n - 1}
        types = _section(config, where).get("layer_types")
        if isinstance(types, list) and len(types) == n:
            for t in dict.fromkeys(types):
                chosen.add(types.index(t))
        out[stack] = sorted(chosen)
    return out


@dataclass(frozen=True)
class WindowPlan:
    """One window: the original blocks it keeps per stack, and the token rows it keeps."""

    layers: Mapping[str, tuple[int, ...]]
    tokens: tuple[int, ...] | None = None  # None: the whole vocabulary
    whole: bool = False  # the model itself, not a cut

    def describe(self) -> str:
        if self.whole:
            return "the whole model"
        blocks = "; ".join(f"{s} blocks {list(v)}" for s, v in sorted(self.layers.items()))
        rows = "" if self.tokens is None else f"; {len(self.tokens)} token rows"
        return blocks + rows

    def key(self) -> str:
        body = json.dumps(
            {"layers": {k: list(v) for k, v in sorted(self.layers.items())}, "tokens": self.tokens},
            sort_keys=True,
        )
        return config_key({"window": body, "format": FORMAT})


def window_config(config: Mapping[str, Any], plan: WindowPlan) -> dict[str, Any]:
    """The config of a window: its blocks' counts and types, its tokens' vocabulary."""
    out: dict[str, Any] = json.loads(json.dumps(dict(config)))
    for stack, where in stack_counts(config).items():
        kept = plan.layers.get(stack)
        if kept is None:
            continue
        section = out if where.section is None else out[where.section]
        types = section.get("layer_types")
        if isinstance(types, list) and len(types) == section.get(where.key):
            section["layer_types"] = [types[i] for i in kept]
        section[where.key] = len(kept)
    if plan.tokens is not None:
        index = {t: i for i, t in enumerate(plan.tokens)}
        for section in (out, *(v for v in out.values() if isinstance(v, dict))):
            if isinstance(section.get("vocab_size"), int):
                section["vocab_size"] = len(plan.tokens)
            for key in _SPECIAL_IDS:
                value = section.get(key)
                if isinstance(value, int):
                    section[key] = index.get(value)
    return out


def window_tokens(ids: Sequence[int], config: Mapping[str, Any]) -> tuple[int, ...]:
    """The token rows a window keeps: its inputs' and the config's special ids."""
    keep = set(int(i) for i in ids)
    for section in (config, *(v for v in config.values() if isinstance(v, Mapping))):
        for key in _SPECIAL_IDS:
            value = section.get(key)
            if isinstance(value, int) and value >= 0:
                keep.add(value)
    return tuple(sorted(keep))


def _renamed(entry: TensorRole, new_layer: int) -> str:
    """The tensor's name with its block index replaced (the index its role says it has)."""
    for m in _CONTAINER.finditer(entry.tensor):
        if int(m.group(1)) == entry.layer:
            start, stop = m.span(1)
            return entry.tensor[:start] + str(new_layer) + entry.tensor[stop:]
    raise NotWindowableError(
        f"tensor {entry.tensor!r} of layer {entry.layer} carries no block index to renumber"
    )


def window_tensors(anatomy: Anatomy, plan: WindowPlan) -> dict[str, torch.Tensor]:
    """The window's tensors, named as the window's config builds them, in stored dtype."""
    source = anatomy.source
    stored = getattr(source, "stored", None)
    read = stored if stored is not None else (lambda n: source.tensor(n, torch.float32))
    out: dict[str, torch.Tensor] = {}
    per_tensor: dict[str, list[TensorRole]] = {}
    for r in anatomy.roles:
        per_tensor.setdefault(r.tensor, []).append(r)
    for name, roles in per_tensor.items():
        first = roles[0]
        if first.layer is None:
            value = read(name)
            if plan.tokens is not None and any(r.role in VOCAB_ROLES for r in roles):
                value = value[torch.tensor(plan.tokens)]
            out[name] = value.contiguous()
            continue
        kept = plan.layers.get(first.stack, ())
        if first.role in STACK_SHARED_ROLES:
            if first.layer == 0:
                out[name] = read(name).contiguous()
            continue
        if first.layer in kept:
            out[_renamed(first, kept.index(first.layer))] = read(name).contiguous()
    prefixes = _layer_prefixes(anatomy, plan)
    for name in anatomy.unclaimed:
        m = _CONTAINER.search(name)
        if m is None:
            continue  # a model-level buffer: rebuilt from the window's config
        key = (name[: m.start(1)], int(m.group(1)))
        if key in prefixes:
            start, stop = m.span(1)
            out[name[:start] + str(prefixes[key]) + name[stop:]] = read(name).contiguous()
    return out


def _layer_prefixes(anatomy: Anatomy, plan: WindowPlan) -> dict[tuple[str, int], int]:
    """(name prefix up to a block index, original index) -> window index, from the roles."""
    out: dict[tuple[str, int], int] = {}
    for r in anatomy.roles:
        if r.layer is None or r.layer not in plan.layers.get(r.stack, ()):
            continue
        for m in _CONTAINER.finditer(r.tensor):
            if int(m.group(1)) == r.layer:
                out[(r.tensor[: m.start(1)], r.layer)] = plan.layers[r.stack].index(r.layer)
    return out


def write_window(
    anatomy: Anatomy,
    config: Mapping[str, Any],
    plan: WindowPlan,
    folder: Path,
    fingerprint: str,
) -> Path:
    """The window's checkpoint folder under `folder` (built once, atomically)."""

    def build(tmp: Path) -> None:
        save_file(window_tensors(anatomy, plan), str(tmp / "model.safetensors"))
        text = json.dumps(window_config(config, plan), indent=1)
        (tmp / "config.json").write_text(text, encoding="utf-8")

    return build_folder(
        folder / f"{fingerprint[:16]}-{plan.key()}",
        lambda target: (target / "config.json").is_file(),
        build,
    )


@dataclass
class Window:
    """A built window: its plan, checkpoint and anatomy (the module is built on request)."""

    plan: WindowPlan
    checkpoint: Checkpoint
    anatomy: Anatomy
    config: Mapping[str, Any]
    _modules: dict[str, Any] = field(default_factory=dict, repr=False)


def open_window(
    anatomy: Anatomy,
    config: Mapping[str, Any],
    plan: WindowPlan,
    folder: Path,
    fingerprint: str,
    name: str,
) -> Window:
    path = write_window(anatomy, config, plan, folder, fingerprint)
    checkpoint = Checkpoint(path, name=f"{name} [{plan.describe()}]")
    checkpoint.validate()
    window_anatomy = build_anatomy(checkpoint, checkpoint.config, anatomy.family)
    return Window(plan, checkpoint, window_anatomy, checkpoint.config)


def remap_ids(inputs: Mapping[str, Any], tokens: tuple[int, ...]) -> dict[str, Any]:
    """Token-id inputs renumbered into a window's token rows."""
    lookup = torch.full((max(tokens) + 1,), -1, dtype=torch.long)
    lookup[torch.tensor(tokens)] = torch.arange(len(tokens))
    out = dict(inputs)
    for key in ("input_ids", "decoder_input_ids"):
        ids = out.get(key)
        if isinstance(ids, torch.Tensor):
            mapped = lookup.to(ids.device)[ids]
            if bool((mapped < 0).any()):
                raise NotWindowableError(f"{key} holds a token outside the window's rows")
            out[key] = mapped
    return out
