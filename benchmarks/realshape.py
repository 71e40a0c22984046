"""Real-shape checkpoints with random weights, written like a Hugging Face release.

    python benchmarks/realshape.py olmo-3-7b [qwen3-4b ...] [--seed 0] [--dtype bfloat16]
        [--shard-size 2GB] [--cache DIR] [--tokenizer DIR]

A name is a config of fixtures/configs (``olmo-3-7b`` for fixtures/configs/olmo-3-7b.json)
or the path of any config JSON whose transformers class exists. The folder holds what
``model.save_pretrained(dir)`` writes for a model of that class loaded in the chosen dtype:
config.json (and generation_config.json for generating classes), then either one
``model.safetensors`` or shards ``model-0000i-of-0000N.safetensors`` beside
``model.safetensors.index.json``. Tensor names, shapes, dtypes, the split into shards, the
safetensors headers and the index are the ones save_pretrained produces (tied copies left
out, transformers' save-time conversions applied); tests/unit/test_realshape.py compares them
byte for byte with save_pretrained on tiny configs of the same classes.

No weights are instantiated to find them: the class is built on the meta device and the
state dict save_pretrained would write is derived from it. Values come from each module's
own init (its class's ``_init_weights``), one module at a time: the module's own tensors
are materialised on the CPU, initialised with a seed derived from (seed, module path) and
written; a file's header is written first, so one shard never has to be held in memory.
A tensor that save-time conversion cuts out of a fused one (MoE experts saved one by one)
is cut, by that conversion, out of its module's initialised fused tensor. Only a tensor
that a conversion makes out of several model tensors has no module of its own; it gets a
generic init (normal with the config's initializer_range, ones for norm gains, zeros for
biases), and the build record lists it.

The folders are cached outside the repository, under ``$TERRAIN_BENCH_CACHE`` (else
``$XDG_CACHE_HOME/terrain/realshape``, else ``~/.cache/terrain/realshape``), named
``<config-name>-<hash of config, seed, dtype, shard size, format and library versions>``.
A build goes to a temporary folder that is renamed into place under a file lock, so a
folder under its final name is complete and two builders never collide. They carry no
random-init marker: they stand in for a user's own release.

A release ships a tokenizer; these folders have none unless ``--tokenizer DIR`` copies the
tokenizer files of another folder in (any tokenizer whose ids fit the config's vocabulary:
the text properties need one, and a run without one reports them not applicable).

The folder's path is printed alone on stdout (``DIR=$(python benchmarks/realshape.py X)``);
parameters, bytes and seconds go to stderr, with a progress bar on a terminal.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import torch

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "fixtures" / "configs"
# The four sizes of the scale benchmark, smallest first.
DEFAULT_SIZES = ("bert-large", "qwen3_5-0_8b", "qwen3-4b", "olmo-3-7b")
# Bump when the bytes a build writes change, so that cached folders are not reused.
FORMAT_VERSION = 1
DEFAULT_SHARD_SIZE = "2GB"
DEFAULT_SEED = 0
DTYPES: dict[str, torch.dtype] = {
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float32": torch.float32,
}
WEIGHTS_NAME = "model.safetensors"
# What a tokenizer leaves in a release folder (whichever of these it has).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
)
INDEX_NAME = "model.safetensors.index.json"
# Written beside (not inside) a cached folder: the folder itself is exactly a release.
BUILD_RECORD_SUFFIX = ".build.json"
# Config keys that say where a checkpoint came from, not what it computes.
_PROVENANCE_KEYS = ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "_commit_hash")
# safetensors' names of torch dtypes, in the order its writer lays tensors out (it sorts by
# dtype, widest first, then by name; tests/unit/test_realshape.py checks it against it).
_SAFETENSORS_DTYPES: tuple[tuple[torch.dtype, str], ...] = (
    (torch.uint64, "U64"),
    (torch.int64, "I64"),
    (torch.float64, "F64"),
    (torch.complex64, "C64"),
    (torch.float32, "F32"),
    (torch.uint32, "U32"),
    (torch.int32, "I32"),
    (torch.bfloat16, "BF16"),
    (torch.float16, "F16"),
    (torch.uint16, "U16"),
    (torch.int16, "I16"),
    (torch.float8_e4m3fn, "F8_E4M3"),
    (torch.float8_e5m2, "F8_E5M2"),
    (torch.int8, "I8"),
    (torch.uint8, "U8"),
    (torch.bool, "BOOL"),
)
_DTYPE_NAME = dict(_SAFETENSORS_DTYPES)
_DTYPE_RANK = {dtype: rank for rank, (dtype, _) in enumerate(_SAFETENSORS_DTYPES)}
# Room left on the disk beyond the checkpoint itself.
_DISK_MARGIN = 1 << 30


class RealShapeError(Exception):
    """A config that cannot be turned into a checkpoint, or a cache that cannot hold it."""


class Progress(Protocol):
    def update(self, n: int) -> object: ...


class _NoProgress:
    def update(self, n: int) -> object:
        return None


# --- configs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigSpec:
    """A config to build: its short name (folder prefix), the file it came from, its fields."""

    name: str
    path: Path
    config: dict[str, Any]


def resolve_config(name_or_path: str) -> ConfigSpec:
    """A fixtures/configs name (``olmo-3-7b``) or the path of a config JSON file."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".json" or candidate.is_file():
        if not candidate.is_file():
            raise RealShapeError(f"{name_or_path}: no such config file")
        return ConfigSpec(candidate.stem, candidate, load_config_file(candidate))
    fixture = CONFIGS / f"{name_or_path}.json"
    if not fixture.is_file():
        known = ", ".join(sorted(p.stem for p in CONFIGS.glob("*.json")))
        raise RealShapeError(
            f"{name_or_path!r} is neither a config file nor a name in fixtures/configs "
            f"(known: {known})"
        )
    return ConfigSpec(name_or_path, fixture, load_config_file(fixture))


def load_config_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RealShapeError(f"{path}: not a readable JSON config: {e}") from None
    if not isinstance(data, dict):
        raise RealShapeError(f"{path}: a config must be a JSON object, not {type(data).__name__}")
    if not isinstance(data.get("model_type"), str):
        raise RealShapeError(f"{path}: field 'model_type' is missing or not a string")
    architectures = data.get("architectures")
    if architectures is not None and not (
        isinstance(architectures, list) and architectures and isinstance(architectures[0], str)
    ):
        raise RealShapeError(f"{path}: field 'architectures' must be a non-empty list of names")
    return data


def _canonical(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in _PROVENANCE_KEYS}


# --- what save_pretrained writes, from the meta device -------------------------------------


def meta_model(config: Mapping[str, Any], dtype: torch.dtype, *, where: str = "config") -> Any:
    """The config's model class built on the meta device in `dtype`: shapes, no storage.

    `_from_config(dtype=...)` is how transformers builds a model in a dtype (it also writes
    the dtype on the config and its sub-configs, as from_pretrained does), so the dtypes of
    the tensors, including any a class keeps in float32, are the class's own.
    """
    import transformers

    clean = _canonical(config)
    model_type = clean.pop("model_type")
    try:
        hf_config = transformers.AutoConfig.for_model(model_type, **clean)
    except (ValueError, KeyError, TypeError) as e:
        raise RealShapeError(
            f"{where}: field 'model_type' ({model_type!r}): transformers cannot build it: {e}"
        ) from None
    architectures = clean.get("architectures")
    cls: Any
    if architectures:
        cls = getattr(transformers, architectures[0], None)
        if cls is None:
            raise RealShapeError(
                f"{where}: field 'architectures': transformers {transformers.__version__} "
                f"has no class {architectures[0]!r}"
            )
    else:
        try:
            cls = transformers.AutoModel._model_mapping[type(hf_config)]
        except KeyError:
            raise RealShapeError(
                f"{where}: no field 'architectures' and no AutoModel class for "
                f"model_type {model_type!r}"
            ) from None
    with torch.device("meta"):
        return cls._from_config(hf_config, dtype=dtype)


@dataclass(frozen=True)
class SavedTensor:
    """One tensor of the saved checkpoint, and where in the model its values come from."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    # The model's tensor it is (under its checkpoint name), or the fused tensor a save-time
    # conversion cut it out of; None when a conversion made it out of several tensors.
    source: str | None = None
    converted: bool = False  # cut out of `source` by the conversion mapping

    @property
    def module(self) -> str | None:
        """Path of the module holding `source` ("" for the model itself)."""
        return None if self.source is None else self.source.rpartition(".")[0]

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


@dataclass(frozen=True)
class Layout:
    """Every file save_pretrained writes for a model, without any of its values."""

    tensors: dict[str, SavedTensor]
    # shard file name -> tensor names, in save_pretrained's order; one entry when unsharded
    shards: dict[str, list[str]]
    sharded: bool
    total_size: int
    parameters: int  # model.num_parameters(), as the index records it

    def index(self) -> dict[str, Any]:
        return {
            "metadata": {"total_parameters": self.parameters, "total_size": self.total_size},
            "weight_map": {n: f for f, names in self.shards.items() for n in names},
        }


def saved_state(model: Any, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict save_pretrained writes from `model.state_dict()`, the way it derives it:
    keys ignored on save dropped, tied copies removed, the conversion mapping reverted to the
    checkpoint's names."""
    from transformers.core_model_loading import revert_weight_conversion
    from transformers.modeling_utils import remove_tied_weights_from_state_dict

    state = dict(state)
    for key in getattr(model, "_keys_to_ignore_on_save", None) or ():
        state.pop(key, None)
    state = remove_tied_weights_from_state_dict(state, model)
    reverted: dict[str, torch.Tensor] = revert_weight_conversion(model, state)
    return reverted


def plan_layout(model: Any, shard_size: int | str = DEFAULT_SHARD_SIZE) -> Layout:
    """Names, shapes, dtypes and shards of the checkpoint save_pretrained writes for `model`.

    The split is the one huggingface_hub's split_torch_state_dict_into_shards makes for
    save_pretrained, told about shared storage as it is told for real tensors (it cannot
    tell it for meta tensors): pieces a conversion cut out of one fused tensor are views of
    it, stay in one shard and count its size once.
    """
    from huggingface_hub import split_state_dict_into_shards_factory

    # The saved state keeps the model's own tensor objects where a conversion only renames,
    # and views of them where it cuts a fused tensor into pieces: identity tells where
    # each saved tensor's values come from.
    full: dict[str, torch.Tensor] = model.state_dict()
    owners = {id(t): key for key, t in full.items()}
    state = saved_state(model, full)
    cut_from = _conversion_sources(model, full, state)
    tensors = {}
    for name, t in state.items():
        own = owners.get(id(t))
        source = own if own is not None else cut_from.get(name)
        converted = own is None and source is not None
        tensors[name] = SavedTensor(name, tuple(t.shape), t.dtype, source, converted)
    split = split_state_dict_into_shards_factory(
        state,
        get_storage_size=_storage_size,
        get_storage_id=_storage_id,
        filename_pattern="model{suffix}.safetensors",
        max_shard_size=shard_size,
    )
    return Layout(
        tensors=tensors,
        shards={f: list(names) for f, names in split.filename_to_tensors.items()},
        sharded=split.is_sharded,
        total_size=int(split.metadata["total_size"]),
        parameters=int(model.num_parameters()),
    )


def _conversion_sources(
    model: Any, full: Mapping[str, torch.Tensor], saved: Mapping[str, torch.Tensor]
) -> dict[str, str]:
    """Saved name -> the one model tensor a save-time conversion makes it from.

    Each model tensor that is not saved as itself goes through the conversion alone: the
    saved names it yields are its pieces. A tensor made from several (none yields it alone)
    has no single source.
    """
    from transformers.core_model_loading import revert_weight_conversion

    kept = {id(t) for t in saved.values()}
    out: dict[str, str] = {}
    for key, tensor in full.items():
        if id(tensor) in kept:
            continue
        try:
            pieces = revert_weight_conversion(model, {key: tensor})
        except (KeyError, ValueError, IndexError, TypeError, RuntimeError):
            continue  # a conversion that needs its companions: no single source
        out.update({name: key for name in pieces if name in saved and name not in out})
    return out


def _storage_id(tensor: torch.Tensor) -> int:
    """The storage behind the tensor, shared by views, as for real tensors: meta tensors
    have storages too (sized, without memory), so pieces of one fused tensor share one."""
    storage_id: int = tensor.untyped_storage()._cdata
    return storage_id


def _storage_size(tensor: torch.Tensor) -> int:
    return int(tensor.untyped_storage().nbytes())


# --- values ---------------------------------------------------------------------------------


def derive_seed(seed: int, label: str) -> int:
    """A seed of its own for each module: values do not depend on the order of the writes."""
    digest = hashlib.sha256(f"{seed}:{label}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class InitValues:
    """Values of saved tensors from their modules' own init, one module at a time.

    A module's tensors are materialised together (its init may set them jointly), pieces
    of fused tensors are cut by transformers' own conversion, and the saved tensors are
    handed out one by one; those not yet written wait in `_pending` (in a file's name order
    a module's tensors are neighbours, so few wait, and not for long).
    """

    def __init__(self, model: Any, seed: int, saved: Iterable[SavedTensor]) -> None:
        self._model = model
        self._seed = seed
        self._by_module: dict[str, list[SavedTensor]] = {}
        for spec in saved:
            if spec.module is not None:
                self._by_module.setdefault(spec.module, []).append(spec)
        self._pending: dict[str, dict[str, torch.Tensor]] = {}
        text = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
        self._std = float(getattr(text, "initializer_range", None) or 0.02)
        self.generic: list[str] = []  # tensors that got the generic init

    def __call__(self, spec: SavedTensor) -> torch.Tensor:
        module = spec.module
        if module is None:
            self.generic.append(spec.name)
            return generic_init(spec, derive_seed(self._seed, spec.name), self._std)
        pending = self._pending.get(module)
        if pending is None or spec.name not in pending:
            pending = self._saved_values(module)
            self._pending[module] = pending
        value = pending.pop(spec.name)
        if not pending:
            del self._pending[module]
        return value

    def _saved_values(self, path: str) -> dict[str, torch.Tensor]:
        """Saved name -> value of every saved tensor whose values the module holds."""
        from transformers.core_model_loading import revert_weight_conversion

        own = self._materialise(path)
        prefix = f"{path}." if path else ""
        specs = self._by_module[path]
        out = {s.name: own[s.source[len(prefix) :]] for s in specs if s.source and not s.converted}
        fused = {s.source for s in specs if s.source and s.converted}
        if fused:
            sources = {key: own[key[len(prefix) :]] for key in fused}
            pieces = revert_weight_conversion(self._model, sources)
            out.update({s.name: pieces[s.name] for s in specs if s.converted})
        return out

    def _materialise(self, path: str) -> dict[str, torch.Tensor]:
        """The module's own parameters and buffers, initialised on the CPU by its class."""
        from transformers import initialization

        module = self._model.get_submodule(path)
        module.to_empty(device="cpu", recurse=False)
        try:
            with (
                torch.random.fork_rng(devices=[]),
                torch.no_grad(),
                initialization.guard_torch_init_functions(),
            ):
                torch.manual_seed(derive_seed(self._seed, path))
                self._init_fn(path)(module)
            own = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
            return {attr: t.detach() for attr, t in own}
        finally:  # back to shapes only: the model never holds more than this module
            module.to_empty(device="meta", recurse=False)

    def _init_fn(self, path: str) -> Callable[[torch.nn.Module], None]:
        """`_init_weights` of the innermost pretrained (sub-)model holding the module, the one
        transformers' initialize_weights dispatches to it."""
        from transformers import PreTrainedModel

        parts = path.split(".") if path else []
        for depth in range(len(parts), -1, -1):
            holder = self._model.get_submodule(".".join(parts[:depth]))
            if isinstance(holder, PreTrainedModel):
                init: Callable[[torch.nn.Module], None] = holder._init_weights
                return init
        raise RealShapeError(f"module {path!r} is not inside a transformers model")


def generic_init(spec: SavedTensor, seed: int, std: float) -> torch.Tensor:
    """For a tensor no module owns: zeros for biases, ones for norm gains, else normal(0, std)."""
    leaf = spec.name.rsplit(".", 1)[-1]
    if leaf == "bias":
        return torch.zeros(spec.shape, dtype=spec.dtype)
    if len(spec.shape) == 1 and "norm" in spec.name.lower():
        return torch.ones(spec.shape, dtype=spec.dtype)
    generator = torch.Generator().manual_seed(seed)
    out = torch.empty(spec.shape, dtype=torch.float32)
    out.normal_(0.0, std, generator=generator)
    return out.to(spec.dtype)


# --- safetensors, streamed ------------------------------------------------------------------


def safetensors_header(specs: Sequence[SavedTensor]) -> tuple[bytes, list[SavedTensor]]:
    """The header safetensors writes for these tensors (metadata as save_pretrained gives it),
    and the order of their data: by dtype, widest first, then by name; padded with spaces to
    a multiple of 8 bytes."""
    order = sorted(specs, key=lambda s: (_dtype_rank(s), s.name))
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for s in order:
        header[s.name] = {
            "dtype": _DTYPE_NAME[s.dtype],
            "shape": list(s.shape),
            "data_offsets": [offset, offset + s.nbytes],
        }
        offset += s.nbytes
    blob = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    return blob, order


def _dtype_rank(spec: SavedTensor) -> int:
    rank = _DTYPE_RANK.get(spec.dtype)
    if rank is None:
        raise RealShapeError(f"tensor {spec.name!r}: dtype {spec.dtype} has no safetensors name")
    return rank


def write_safetensors(
    path: Path,
    specs: Sequence[SavedTensor],
    values: Callable[[SavedTensor], torch.Tensor],
    progress: Progress | None = None,
) -> int:
    """Write one safetensors file, asking `values` for each tensor only when its bytes are
    due: the file never exists in memory, only the tensor being written. Returns its size."""
    if sys.byteorder != "little":  # safetensors stores little-endian; so would a raw write
        raise RealShapeError("safetensors files are little-endian; this machine is not")
    blob, order = safetensors_header(specs)
    sink = progress or _NoProgress()
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for spec in order:
            tensor = values(spec)
            if tuple(tensor.shape) != spec.shape or tensor.dtype != spec.dtype:
                raise RealShapeError(
                    f"tensor {spec.name!r}: init gave {tuple(tensor.shape)} {tensor.dtype}, "
                    f"the checkpoint holds {spec.shape} {spec.dtype}"
                )
            flat = tensor.contiguous().reshape(-1)
            if flat.numel():
                f.write(flat.view(torch.uint8).numpy().data)
            del tensor, flat
            sink.update(spec.nbytes)
        f.flush()
        os.fsync(f.fileno())
        return f.tell()


def safetensors_data_end(path: Path) -> int | None:
    """The size a safetensors file must have by its own header; None if unreadable."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) != 8:
                return None
            (n,) = struct.unpack("<Q", head)
            header = json.loads(f.read(n))
    except (OSError, ValueError):
        return None
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    return int(8 + n + max(ends, default=0))


# --- building -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildRecord:
    """What a build wrote and what it took; kept beside the cached folder."""

    config: str
    parameters: int
    bytes: int
    seconds: float
    files: int
    seed: int
    dtype: str
    shard_size: str
    generic_init: list[str] = field(default_factory=list)
    tokenizer: str | None = None  # the folder its tokenizer files were copied from
    format: int = FORMAT_VERSION
    transformers: str = ""
    torch: str = ""
    built: str = ""


def build(
    config: Mapping[str, Any],
    out: Path,
    *,
    seed: int = DEFAULT_SEED,
    dtype: str = "bfloat16",
    shard_size: int | str = DEFAULT_SHARD_SIZE,
    label: str = "config",
    progress: bool = False,
    tokenizer: Path | None = None,
) -> BuildRecord:
    """Write the checkpoint of `config` into the existing, empty folder `out`."""
    import transformers

    start = time.perf_counter()
    model = meta_model(config, _torch_dtype(dtype), where=label)
    layout = plan_layout(model, shard_size)
    _check_disk(out, layout.total_size, label)
    write_config(model, out)
    if tokenizer is not None:
        copy_tokenizer(tokenizer, out, vocab_size=_vocab_size(model), label=label)
    values = InitValues(model, seed, layout.tensors.values())
    with _progress_bar(layout.total_size, label, enabled=progress) as bar:
        for filename, names in layout.shards.items():
            specs = [layout.tensors[n] for n in names]
            write_safetensors(out / filename, specs, values, bar)
    if layout.sharded:
        text = json.dumps(layout.index(), indent=2, sort_keys=True) + "\n"
        (out / INDEX_NAME).write_text(text, encoding="utf-8")
    return BuildRecord(
        config=label,
        parameters=layout.parameters,
        bytes=sum(p.stat().st_size for p in out.iterdir() if p.is_file()),
        seconds=round(time.perf_counter() - start, 3),
        files=len(layout.shards),
        seed=seed,
        dtype=dtype,
        shard_size=str(shard_size),
        generic_init=values.generic,
        tokenizer=None if tokenizer is None else str(tokenizer),
        transformers=transformers.__version__,
        torch=torch.__version__,
        built=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def write_config(model: Any, out: Path) -> None:
    """config.json (and generation_config.json) as save_pretrained writes them: the dtype of
    the weights and the class name set on the config first."""
    model.config.dtype = str(model.dtype).split(".")[1]
    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(out)
    if model.can_generate():
        model.generation_config.save_pretrained(out)


def tokenizer_files(folder: Path) -> list[Path]:
    files = [folder / name for name in TOKENIZER_FILES if (folder / name).is_file()]
    if not files:
        raise RealShapeError(
            f"--tokenizer {folder}: no tokenizer files there "
            f"(looked for {', '.join(TOKENIZER_FILES)})"
        )
    return files


def copy_tokenizer(source: Path, out: Path, *, vocab_size: int, label: str) -> None:
    """Copy the tokenizer files of `source` in, if every id it can give has an embedding row."""
    from transformers import AutoTokenizer

    for path in tokenizer_files(source):
        shutil.copyfile(path, out / path.name)
    try:
        size = len(AutoTokenizer.from_pretrained(out))
    except (OSError, ValueError) as e:
        raise RealShapeError(f"--tokenizer {source}: transformers cannot load it: {e}") from None
    if size > vocab_size:
        raise RealShapeError(
            f"--tokenizer {source}: {size} tokens do not fit {label}'s field 'vocab_size' "
            f"({vocab_size})"
        )


def _vocab_size(model: Any) -> int:
    return int(model.config.get_text_config().vocab_size)


def tokenizer_digest(folder: Path | None) -> str | None:
    """Hash of the tokenizer files (names and bytes): another tokenizer, another folder."""
    if folder is None:
        return None
    digest = hashlib.sha256()
    for path in tokenizer_files(folder):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _torch_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise RealShapeError(f"dtype {name!r}: choose one of {', '.join(DTYPES)}") from None


def _check_disk(out: Path, needed: int, label: str) -> None:
    free = shutil.disk_usage(out).free
    if free < needed + _DISK_MARGIN:
        raise RealShapeError(
            f"{label}: the checkpoint needs {needed / 1e9:.1f} GB and {out.parent} has "
            f"{free / 1e9:.1f} GB free"
        )


class _progress_bar:  # noqa: N801 (a context manager used like a function)
    """tqdm over bytes on a terminal; nothing when output is not one or when not asked."""

    def __init__(self, total: int, label: str, *, enabled: bool) -> None:
        self._args = (total, label, enabled)
        self._bar: Any = None

    def __enter__(self) -> Progress:
        total, label, enabled = self._args
        if not enabled:
            return _NoProgress()
        from tqdm import tqdm  # type: ignore[import-untyped]  # ships no annotations

        # disable=None: tqdm stays silent when stderr is not a terminal
        self._bar = tqdm(
            total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, disable=None
        )
        bar: Progress = self._bar
        return bar

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


# --- the cache ------------------------------------------------------------------------------


def default_cache_root() -> Path:
    env = os.environ.get("TERRAIN_BENCH_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "terrain" / "realshape"


def cache_key(
    config: Mapping[str, Any],
    *,
    seed: int,
    dtype: str,
    shard_size: int | str,
    tokenizer: str | None = None,
) -> str:
    """Short hash of everything the bytes depend on (library versions: names and init;
    `tokenizer`: tokenizer_digest of the tokenizer copied in, if any)."""
    import transformers

    fields: dict[str, Any] = {"tokenizer": tokenizer} if tokenizer is not None else {}
    payload = json.dumps(
        {
            **fields,
            "config": _canonical(config),
            "seed": seed,
            "dtype": dtype,
            "shard_size": str(shard_size),
            "format": FORMAT_VERSION,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def is_complete(folder: Path) -> bool:
    """A config.json and every weight file the folder names, each as long as its header says."""
    if not (folder / "config.json").is_file():
        return False
    index = folder / INDEX_NAME
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return False
    else:
        files = [WEIGHTS_NAME]
    for name in files:
        path = folder / name
        if not path.is_file() or safetensors_data_end(path) != path.stat().st_size:
            return False
    return True


@dataclass(frozen=True)
class Ensured:
    path: Path
    record: BuildRecord | None  # None when a complete folder has lost its record
    reused: bool


def ensure(
    spec: ConfigSpec,
    *,
    seed: int = DEFAULT_SEED,
    dtype: str = "bfloat16",
    shard_size: int | str = DEFAULT_SHARD_SIZE,
    cache_root: Path | None = None,
    progress: bool = False,
    tokenizer: Path | None = None,
) -> Ensured:
    """The cached folder of `spec`, building it first unless a complete one exists."""
    from filelock import FileLock

    root = cache_root or default_cache_root()
    key = cache_key(
        spec.config,
        seed=seed,
        dtype=dtype,
        shard_size=shard_size,
        tokenizer=tokenizer_digest(tokenizer),
    )
    target = root / f"{spec.name}-{key}"
    record_path = target.with_name(target.name + BUILD_RECORD_SUFFIX)
    if is_complete(target):
        return Ensured(target, read_record(record_path), reused=True)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if is_complete(target):  # another builder finished while this one waited
            return Ensured(target, read_record(record_path), reused=True)
        _remove_leftovers(target)
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=root))
        try:
            record = build(
                spec.config,
                tmp,
                seed=seed,
                dtype=dtype,
                shard_size=shard_size,
                label=spec.name,
                progress=progress,
                tokenizer=tokenizer,
            )
            # the record first: a folder under its final name is the mark of completeness
            _write_atomic(record_path, json.dumps(asdict(record), indent=2) + "\n")
            tmp.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would hide it from other users
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return Ensured(target, record, reused=False)


def _remove_leftovers(target: Path) -> None:
    """An incomplete folder under the final name, and temporary folders of killed builds
    (only a builder holding the lock creates them, so under the lock they are stale)."""
    if target.exists():
        shutil.rmtree(target)
    for stale in target.parent.glob(target.name + ".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # as an ordinary file, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_record(path: Path) -> BuildRecord | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return BuildRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


# --- command line ---------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("configs", nargs="+", help="fixtures/configs names or config JSON paths")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--dtype", choices=list(DTYPES), default="bfloat16")
    p.add_argument("--shard-size", default=DEFAULT_SHARD_SIZE, help="e.g. 2GB, 500MB")
    p.add_argument("--cache", type=Path, default=None, help="default: $TERRAIN_BENCH_CACHE")
    p.add_argument(
        "--tokenizer", type=Path, default=None, help="copy this folder's tokenizer files in"
    )
    return p.parse_args(argv)


def describe(ensured: Ensured) -> str:
    r = ensured.record
    if r is None:
        return f"{ensured.path.name}: reused (its build record is missing)"
    how = "reused, built" if ensured.reused else "built"
    note = f"; {len(r.generic_init)} tensors with the generic init" if r.generic_init else ""
    return (
        f"{r.config}: {r.parameters:,} parameters, {r.bytes:,} bytes in {r.files} "
        f"weight file(s), {r.dtype}; {how} in {r.seconds:.1f} s{note}"
    )


def _each(names: Sequence[str]) -> Iterator[ConfigSpec]:
    for name in names:
        yield resolve_config(name)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    try:
        for spec in _each(args.configs):
            ensured = ensure(
                spec,
                seed=args.seed,
                dtype=args.dtype,
                shard_size=args.shard_size,
                cache_root=args.cache,
                progress=True,
                tokenizer=args.tokenizer,
            )
            print(describe(ensured), file=sys.stderr, flush=True)
            print(ensured.path, flush=True)
    except RealShapeError as e:
        print(f"realshape: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
