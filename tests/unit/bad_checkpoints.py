"""Builders of hostile or broken checkpoint folders, each from a copy of a good tiny one.

Each builder takes the good folder's tensors and config and a fresh folder to fill, and
returns nothing; `outside` is a folder beside the checkpoint that it must never read.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

Tensors = dict[str, torch.Tensor]
Builder = Callable[[Tensors, dict[str, Any], Path, Path], None]
INDEX = "model.safetensors.index.json"


def q_name(tensors: Tensors) -> str:
    return next(k for k in tensors if k.endswith("attention.self.query.weight"))


def write(folder: Path, tensors: Tensors | None, config: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    if tensors is not None:
        save_file(tensors, str(folder / "model.safetensors"))


def with_q(make: Callable[[torch.Tensor], torch.Tensor]) -> Builder:
    def build(t: Tensors, cfg: dict[str, Any], d: Path, outside: Path) -> None:
        q = q_name(t)
        write(d, {**t, q: make(t[q])}, cfg)

    return build


def sharded(weight_map: Callable[[list[str], list[str], Path], Any], shards: str = "ab") -> Builder:
    """Two shards a/b of the tensors, and an index whose weight_map the caller writes."""

    def build(t: Tensors, cfg: dict[str, Any], d: Path, outside: Path) -> None:
        names = list(t)
        first, rest = names[: len(names) // 2], names[len(names) // 2 :]
        write(d, None, cfg)
        parts = {"a": first, "b": rest}
        for letter in shards:
            save_file({k: t[k] for k in parts[letter]}, str(d / f"{letter}.safetensors"))
        save_file({k: t[k] for k in rest}, str(outside / "b.safetensors"))
        wm = weight_map(first, rest, outside)
        body = wm if isinstance(wm, str) else json.dumps({"metadata": {}, "weight_map": wm})
        (d / INDEX).write_text(body)

    return build


def _plain_map(first: list[str], rest: list[str]) -> dict[str, str]:
    return {**{k: "a.safetensors" for k in first}, **{k: "b.safetensors" for k in rest}}


def index_absolute(first: list[str], rest: list[str], outside: Path) -> Any:
    return {**_plain_map(first, rest), **{k: str(outside / "b.safetensors") for k in rest}}


def index_dotdot(first: list[str], rest: list[str], outside: Path) -> Any:
    return {**_plain_map(first, rest), **{k: f"../{outside.name}/b.safetensors" for k in rest}}


def index_twice(first: list[str], rest: list[str], outside: Path) -> Any:
    text = json.dumps({"weight_map": _plain_map(first, rest)})
    return text[:-2] + f', "{first[0]}": "b.safetensors"' + "}}"  # a JSON key given twice


def index_lacks(first: list[str], rest: list[str], outside: Path) -> Any:
    return {**_plain_map(first, rest), "extra.weight": "a.safetensors"}


def index_list(first: list[str], rest: list[str], outside: Path) -> Any:
    return json.dumps({"weight_map": first + rest})


def index_plain(first: list[str], rest: list[str], outside: Path) -> Any:
    return _plain_map(first, rest)


def shard_symlink_out(t: Tensors, cfg: dict[str, Any], d: Path, outside: Path) -> None:
    sharded(index_plain, shards="a")(t, cfg, d, outside)
    os.symlink(outside / "b.safetensors", d / "b.safetensors")


def config_of(change: dict[str, Any]) -> Builder:
    def build(t: Tensors, cfg: dict[str, Any], d: Path, outside: Path) -> None:
        write(d, t, {**cfg, **change})

    return build


def config_special(kind: str) -> Builder:
    def build(t: Tensors, cfg: dict[str, Any], d: Path, outside: Path) -> None:
        write(d, t, cfg)
        target = d / "config.json"
        target.unlink()
        if kind == "fifo":
            os.mkfifo(target)
        elif kind == "devzero":
            os.symlink("/dev/zero", target)
        else:  # a symbolic link to a valid config outside the folder
            (outside / "config.json").write_text(json.dumps(cfg))
            os.symlink(outside / "config.json", target)

    return build


def weights_special(kind: str) -> Builder:
    def build(t: Tensors, cfg: dict[str, Any], d: Path, outside: Path) -> None:
        write(d, None, cfg)
        if kind == "fifo":
            os.mkfifo(d / "model.safetensors")
        else:
            os.symlink("/dev/zero", d / "model.safetensors")

    return build


def lying_header(kind: str) -> Builder:
    """A one-tensor file whose header lies about the data after it."""

    def build(t: Tensors, cfg: dict[str, Any], d: Path, outside: Path) -> None:
        write(d, None, cfg)
        q = t[q_name(t)].contiguous()
        data = q.numpy().tobytes()
        shape, dtype, end = list(q.shape), "F32", len(data)
        if kind == "offsets":
            end = len(data) * 10
        elif kind == "dtype":
            dtype = "Q4"
        elif kind == "shape":
            shape = [shape[0], shape[1] * 2]
        entry = {"dtype": dtype, "shape": shape, "data_offsets": [0, end]}
        header = json.dumps({q_name(t): entry}).encode()
        length = 1 << 40 if kind == "length" else len(header)
        (d / "model.safetensors").write_bytes(struct.pack("<Q", length) + header + data)

    return build


class _Unpickled:
    """Unpickling this creates `marker`: a folder that is never unpickled leaves none."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def pickle_only(t: Tensors, cfg: dict[str, Any], d: Path, outside: Path) -> None:
    write(d, None, cfg)
    (d / "pytorch_model.bin").write_bytes(pickle.dumps(_Unpickled(outside / "UNPICKLED")))


def auto_map_code(t: Tensors, cfg: dict[str, Any], d: Path, outside: Path) -> None:
    """Remote code whose import creates a marker file outside the folder."""
    auto = {"AutoConfig": "code.EvilConfig", "AutoModel": "code.EvilModel"}
    write(d, t, {**cfg, "auto_map": auto, "architectures": ["EvilModel"]})
    marker = outside / "IMPORTED"
    (d / "code.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
