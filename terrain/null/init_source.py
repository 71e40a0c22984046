"""A random-init model as a tensor source: each tensor generated on request, nothing on disk.

The null of a measure is the same measure on the family's own random initialisation. A
replica written to disk costs the model's size again (29 GB of float32 for a 7B model),
so here the model is built on the meta device (shapes, no storage) and a tensor is made
only when it is read: its module alone is given storage, initialised by the library's own
`_init_weights` along the module's ancestor chain, leaf first (the order in which
`PreTrainedModel.initialize_weights` reaches it: T5 and GPT-2 initialise some weights from
the attention or MLP container, not the leaf), read, and released. Meta tensors of
other modules make those ancestor calls no-ops for everything but the leaf.

Each module's values come from its own seed, derived from (the config, the run's seed,
the module's path), so a tensor is the same whatever was generated before it, and two
seeds give independent models. Names are those `save_pretrained` writes (tied copies left
out, transformers' save-time renames applied), so the family adapter maps them as it maps
a real checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import torch

from terrain.architecture import PROVENANCE_KEYS, meta_model
from terrain.errors import SourceError
from terrain.seeds import derived_seed


def config_key(config: Mapping[str, Any]) -> str:
    """A short digest of what a config computes (provenance keys left out)."""
    canonical = {k: v for k, v in config.items() if k not in PROVENANCE_KEYS}
    payload = json.dumps(canonical, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def build_meta_model(config: Mapping[str, Any], label: str) -> Any:
    """The transformers model of `config` on the meta device (shapes, no storage)."""
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        raise SourceError(f"{label}: config has no 'model_type'")
    return meta_model(config, model_type, label, SourceError)[0]


def saved_to_module_names(model: Any) -> dict[str, str]:
    """save_pretrained's tensor names -> the module's parameter/buffer names (ties left out).

    transformers' save-time conversion is a renaming for every family terrain reads; one
    that transforms values (fused experts, say) has no single module tensor per name and
    is refused.
    """
    from transformers.core_model_loading import revert_weight_conversion
    from transformers.modeling_utils import remove_tied_weights_from_state_dict

    state: dict[str, torch.Tensor] = model.state_dict()
    by_id = {id(t): n for n, t in state.items()}
    kept = remove_tied_weights_from_state_dict(dict(state), model)
    saved: dict[str, torch.Tensor] = revert_weight_conversion(model, kept)
    out: dict[str, str] = {}
    for name, tensor in saved.items():
        module_name = by_id.get(id(tensor))
        if module_name is None:
            raise SourceError(
                f"tensor {name!r}: transformers' save-time conversion of "
                f"{type(model).__name__} changes values, not only names; no random-init "
                "null can be generated tensor by tensor"
            )
        out[name] = module_name
    return out


class InitSource:
    """Tensors of a seeded random-init model of `config`, generated one module at a time.

    `dtype`: the dtype tensors are generated in (the checkpoint's own, so that a bf16
    release's null is rounded like it; a 7B token table then takes 0.8 GB, not 1.6 GB).
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        seed: int,
        name: str,
        dtype: torch.dtype = torch.float32,
        cache_bytes: int = 256 << 20,
    ) -> None:
        self._name = name
        self.config = dict(config)
        self.seed = seed
        self.dtype = dtype
        self._key = config_key(config)
        # Recently generated tensors (the battery reads a tensor in row chunks, pass after
        # pass): regenerating each chunk would initialise a 7B layer's MLP a dozen times.
        self._recent: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.cache_bytes = cache_bytes
        # One generation at a time: the battery's pool threads read concurrently, and a
        # generation moves modules between devices and seeds torch's global generator.
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    @cached_property
    def _model(self) -> Any:
        model = build_meta_model(self.config, f"null {self._name!r}")
        return model.to(self.dtype)

    @cached_property
    def _names(self) -> dict[str, str]:
        return saved_to_module_names(self._model)

    @cached_property
    def _shapes(self) -> dict[str, tuple[int, ...]]:
        state = self._model.state_dict()
        return {saved: tuple(state[module].shape) for saved, module in self._names.items()}

    def tensor_shapes(self) -> Mapping[str, tuple[int, ...]]:
        return self._shapes

    def read_order(self) -> list[str]:
        return list(self._names)

    def stored_dtype(self, name: str) -> str:
        return {torch.bfloat16: "BF16", torch.float16: "F16", torch.float64: "F64"}.get(
            self.dtype, "F32"
        )

    def nbytes(self, name: str) -> int:
        n = 1
        for s in self._shapes[name]:
            n *= s
        return n * torch.empty((), dtype=self.dtype).element_size()

    def tensor(self, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        module_name = self._names.get(name)
        if module_name is None:
            raise SourceError(f"null {self._name!r}: no tensor {name!r} in the random-init model")
        with self._lock:
            value = self._recent.get(name)
            if value is None:
                value = self._generate(module_name)
                self._recent[name] = value
                held = sum(t.numel() * t.element_size() for t in self._recent.values())
                while len(self._recent) > 1 and held > self.cache_bytes:
                    _, dropped = self._recent.popitem(last=False)
                    held -= dropped.numel() * dropped.element_size()
            else:
                self._recent.move_to_end(name)
        return value.to(dtype)

    def stored(self, name: str) -> torch.Tensor:
        """The tensor in the dtype it is generated in."""
        return self.tensor(name, self.dtype)

    def rows(
        self, name: str, start: int, stop: int, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        return self.tensor(name, dtype)[start:stop]

    def _generate(self, module_name: str) -> torch.Tensor:
        """Give the tensor's module storage, initialise it as the library would, read it."""
        path, _, attr = module_name.rpartition(".")
        model = self._model
        leaf = model.get_submodule(path) if path else model
        chain = _ancestors(model, path)
        leaf.to_empty(device="cpu", recurse=False)
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                torch.manual_seed(derived_seed(self._key, self.seed, path))
                for module, owner in chain:
                    owner._init_weights(module)
            value: torch.Tensor = getattr(leaf, attr).detach().clone()
        finally:
            leaf.to_empty(device="meta", recurse=False)
        return value


def _ancestors(model: Any, path: str) -> list[tuple[torch.nn.Module, Any]]:
    """(module, the PreTrainedModel whose init reaches it) from the leaf at `path` up to the
    root, in the order `initialize_weights` visits them (children before parents)."""
    from transformers import PreTrainedModel

    parts = path.split(".") if path else []
    modules = [model]
    for part in parts:
        modules.append(modules[-1].get_submodule(part))
    owners: list[Any] = []
    owner = model
    for module in modules:
        if isinstance(module, PreTrainedModel):
            owner = module
        owners.append(owner)
    return list(zip(modules, owners, strict=True))[::-1]
