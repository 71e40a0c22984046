"""Attaching a modulator to any supported model through hooks on the blocks an Anatomy finds.

No forward loop is rewritten: a forward pre-hook on each residual block replaces the block's
input hidden states by the modulated ones, and a pre-hook on the model records the token ids.
Detaching removes every hook; the model's parameters are never touched or registered with
the modulator, so the model after `detach()` is the model before `attach()`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from terrain.anatomy import Anatomy
from terrain.errors import AnatomyError
from terrain.tracing import resolve_name, saved_names


class Modulator(Protocol):
    def modulate(
        self, residual: torch.Tensor, layer: int, token_ids: torch.Tensor | None
    ) -> torch.Tensor: ...


def default_stack(anatomy: Anatomy) -> str:
    stacks = anatomy.stacks()
    for preferred in ("encoder", "decoder", "vision"):
        if preferred in stacks:
            return preferred
    if not stacks:
        raise AnatomyError(f"model {anatomy.model_name!r}: no layered stack to modulate")
    return stacks[0]


def residual_blocks(module: nn.Module, anatomy: Anatomy, stack: str) -> list[tuple[int, str]]:
    """(layer, module path) of each block of `stack`: the common prefix of its tensors' names."""
    names = [n for n, _ in module.named_parameters()]
    renamed = saved_names(module)
    by_layer: dict[int, list[str]] = {}
    for r in anatomy.roles:
        if r.stack == stack and r.layer is not None:
            by_layer.setdefault(r.layer, []).append(resolve_name(r.tensor, names, renamed))
    blocks = []
    for layer, params in sorted(by_layer.items()):
        path = _block_path(module, _common_prefix(params), layer)
        if path is None:
            raise AnatomyError(
                f"model {anatomy.model_name!r}: no block module for {stack} layer {layer} "
                f"(tensors under {_common_prefix(params)!r})"
            )
        blocks.append((layer, path))
    return blocks


def _block_path(module: nn.Module, prefix: str, layer: int) -> str | None:
    """The element `layer` of a ModuleList on the prefix's path: the block that is called.

    The tensors' common prefix can run deeper than the block (T5's `block.3.layer`), and
    a ModuleList itself is never called, so its hooks would never fire.
    """
    parts = prefix.split(".")
    for i, part in enumerate(parts):
        if part == str(layer) and i > 0:
            parent = module.get_submodule(".".join(parts[:i]))
            if isinstance(parent, nn.ModuleList):
                return ".".join(parts[: i + 1])
    return None


def _common_prefix(names: Iterable[str]) -> str:
    parts = [n.split(".") for n in names]
    common: list[str] = []
    for pieces in zip(*parts, strict=False):
        if len(set(pieces)) != 1:
            break
        common.append(pieces[0])
    if common and common == parts[0][: len(common)] and len(common) == len(parts[0]):
        common = common[:-1]  # a single tensor: its module, not the parameter
    return ".".join(common)


@dataclass
class Attachment:
    """The live hooks of one attached modulator."""

    stack: str
    layers: list[int]
    handles: list[RemovableHandle] = field(default_factory=list)
    token_ids: torch.Tensor | None = None

    def detach(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def attach(
    module: nn.Module,
    anatomy: Anatomy,
    modulator: Modulator,
    *,
    stack: str | None = None,
    layers: Iterable[int] | None = None,
) -> Attachment:
    chosen = stack or default_stack(anatomy)
    blocks = residual_blocks(module, anatomy, chosen)
    wanted = set(layers) if layers is not None else {layer for layer, _ in blocks}
    attachment = Attachment(chosen, sorted(wanted))
    ids_key = "decoder_input_ids" if chosen == "decoder" else "input_ids"

    def remember_ids(_: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ids = kwargs.get(ids_key, kwargs.get("input_ids"))
        if (
            ids is None
            and args
            and isinstance(args[0], torch.Tensor)
            and not args[0].is_floating_point()
        ):
            ids = args[0]
        attachment.token_ids = ids

    attachment.handles.append(module.register_forward_pre_hook(remember_ids, with_kwargs=True))
    for layer, path in blocks:
        if layer in wanted:
            hook = _block_hook(modulator, layer, attachment)
            block = module.get_submodule(path)
            attachment.handles.append(block.register_forward_pre_hook(hook, with_kwargs=True))
    return attachment


def _block_hook(modulator: Modulator, layer: int, attachment: Attachment) -> Any:
    def hook(_: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if args:
            new = modulator.modulate(args[0], layer, attachment.token_ids)
            return (new, *args[1:]), kwargs
        new = modulator.modulate(kwargs["hidden_states"], layer, attachment.token_ids)
        return args, {**kwargs, "hidden_states": new}

    return hook
