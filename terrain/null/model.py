"""A model's random-init nulls: the family's own initialisation of its config, several seeds.

Every value terrain reports stands beside the same measure on a random-init model of the
same config, never on the model itself: the nulls use seeds 1…k, and the seeded replicas
that terrain tests as models (`synthetic:` sources) are seed 0. How a null is made depends
on the model's size (`NullPlan`):

- up to `FULL_NULL_PARAMETERS`, the whole config is initialised in memory per seed, exactly
  as `from_config` would make it (nothing written to disk), and its module serves the
  forward properties' nulls too;
- above it, a null is a random-init model of the config cut to one layer of each type per
  stack (terrain/null/truncate.py), its tensors generated one at a time
  (terrain/null/init_source.py): every layer's tensors of one shape and init are the same
  in distribution, so one null per (shape, init) serves every layer. Its token table is
  cut to `NULL_TABLE_ROWS` rows (rows are i.i.d. at init), its embedding geometry and the
  spectra of matrices wider than `NULL_SPECTRA_MAX_N` are left to their exact analytic
  laws (1/(1+D/N) and Marchenko–Pastur), and the report says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import torch

from terrain.anatomy import Anatomy, build_anatomy
from terrain.architecture import model_class
from terrain.battery import BatteryResult, StreamOptions, run_battery
from terrain.errors import SourceError
from terrain.family import named_layout
from terrain.null.init_source import InitSource, build_meta_model, config_key
from terrain.null.truncate import truncated_config
from terrain.seeds import derived_seed
from terrain.workpool import MemoryBudget

T = TypeVar("T")
FULL_NULL_PARAMETERS = 150_000_000
# Seeds of the null: five for a model whose null is built whole (enough for a spread and a
# t test, terrain/significance.py), three above FULL_NULL_PARAMETERS, where each seed's
# tensors are generated one per (shape, init) and cost a pass over the largest of them.
NULL_SEEDS = (1, 2, 3, 4, 5)
LARGE_NULL_SEEDS = (1, 2, 3)
NULL_TABLE_ROWS = 8192
NULL_SPECTRA_MAX_N = 1024
_VOCAB_KEYS = ("vocab_size",)


@dataclass(frozen=True)
class NullPlan:
    """How a model's nulls are made (see the module docstring)."""

    seeds: tuple[int, ...]
    full: bool
    config: dict[str, Any]  # the null's config (cut for large models)
    kept_layers: dict[str, Any] = field(default_factory=dict)
    model_config: dict[str, Any] = field(default_factory=dict)  # the model's own, uncut

    def describe(self) -> str:
        seeds = ", ".join(str(s) for s in self.seeds)
        if self.full:
            return f"random init of the same config (seeds {seeds}, in memory)"
        kept = "; ".join(f"{k}: layers {v}" for k, v in sorted(self.kept_layers.items()))
        return (
            f"random init of the same config cut to one layer of each type ({kept}), tensors "
            f"generated one at a time (seeds {seeds}); one null per (shape, init); token table "
            f"{NULL_TABLE_ROWS} rows; spectra wider than {NULL_SPECTRA_MAX_N} and the embedding "
            "geometry from their analytic laws"
        )


def plan_for(
    config: Mapping[str, Any], parameters: int, seeds: tuple[int, ...] | None = None
) -> NullPlan:
    if 0 in (seeds or ()):
        raise ValueError("null seed 0 is the synthetic replica itself; a null uses others")
    if parameters <= FULL_NULL_PARAMETERS:
        return NullPlan(seeds or NULL_SEEDS, True, dict(config), model_config=dict(config))
    cut, kept = truncated_config(config, per_type=1)
    _cut_vocab(cut)
    return NullPlan(seeds or LARGE_NULL_SEEDS, False, cut, kept, model_config=dict(config))


def _cut_vocab(config: dict[str, Any]) -> None:
    for section in (config, *(v for v in config.values() if isinstance(v, dict))):
        for key in _VOCAB_KEYS:
            n = section.get(key)
            if isinstance(n, int) and n > NULL_TABLE_ROWS:
                section[key] = NULL_TABLE_ROWS
        for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
            v = section.get(key)
            if isinstance(v, int) and v >= NULL_TABLE_ROWS:
                section[key] = None


class ModuleSource:
    """The tensors of an in-memory module under the names save_pretrained writes."""

    def __init__(self, name: str, tensors: Mapping[str, torch.Tensor]) -> None:
        self._name = name
        self._tensors = dict(tensors)

    @property
    def name(self) -> str:
        return self._name

    def tensor_shapes(self) -> Mapping[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self._tensors.items()}

    def read_order(self) -> list[str]:
        return list(self._tensors)

    def tensor(self, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self._tensors[name].to(dtype)

    def stored(self, name: str) -> torch.Tensor:
        return self._tensors[name]

    def rows(
        self, name: str, start: int, stop: int, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        return self._tensors[name][start:stop].to(dtype)


def initialised_module(config: Mapping[str, Any], seed: int, label: str) -> Any:
    """The whole random-init model of `config`, as `from_config` makes it under `seed`."""
    import transformers

    layout = named_layout(config)
    if layout is not None:
        torch.manual_seed(seed)
        return layout.module(config, label)
    model = build_meta_model(config, label)  # validates the config cheaply first
    del model
    clean = {k: v for k, v in config.items() if k != "model_type"}
    hf_config = transformers.AutoConfig.for_model(str(config["model_type"]), **clean)
    cls = model_class(f"model {label!r}: config", clean)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.device("cpu"):
            build: Any = cls if cls is not None else transformers.AutoModel.from_config
            return build(hf_config).eval()


def saved_state(module: Any) -> dict[str, torch.Tensor]:
    """The module's tensors as save_pretrained names them (tied copies left out)."""
    from terrain.anatomy.meta import _as_saved

    if not hasattr(module, "config"):  # open_clip's layout: its names are the checkpoint's
        return {k: v.detach() for k, v in module.state_dict().items()}
    return {k: v.detach() for k, v in _as_saved(module).items()}


@dataclass(frozen=True)
class NullCheckpoint:
    """What text encoders and caches ask of a checkpoint, for a null that has none on disk."""

    config: Mapping[str, Any]
    fingerprint: str  # identifies the null's values: config digest and seed


class NullModel:
    """One seed of a model's null: its anatomy, battery and (small models) module."""

    random_init = True

    def __init__(
        self,
        of: str,
        plan: NullPlan,
        seed: int,
        *,
        family: str,
        device: str,
        dtype: torch.dtype,
        budget: MemoryBudget,
        cache_dir: Path,
        gain_offset: Callable[[str, str], float] = lambda stack, role: 0.0,
        rounding: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.of = of
        # A quantized model's null is rounded like it (terrain/gguf/requantize.py); small
        # models only, where the null is a whole module.
        self.rounding = rounding if plan.full else None
        self.plan = plan
        self.seed = seed
        self.family = family
        self.device = device
        self.dtype = dtype
        self.budget = budget
        self.cache_dir = cache_dir
        self.gain_offset = gain_offset
        self.label = f"{of} null (random init, seed {seed})"
        rounded = ":rounded" if self.rounding is not None else ""
        self.checkpoint = NullCheckpoint(
            plan.config,
            f"null:{config_key(plan.config)}:seed{seed}:full{int(plan.full)}{rounded}",
        )
        self._battery: BatteryResult | None = None
        self._memo: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self.label

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]  # type: ignore[no-any-return]

    def module(self, dtype: str | None = None) -> Any:
        """A new whole random-init module (small models only) on this null's device: built
        afresh on each call (the same values for the same seed), so no null module stays in
        memory between the properties that use it."""
        if not self.plan.full:
            raise SourceError(
                f"{self.label}: no whole null module above {FULL_NULL_PARAMETERS:,} parameters"
            )
        module = initialised_module(self.plan.config, self.seed, self.label)
        if self.rounding is not None:
            with torch.no_grad():
                for key, value in module.state_dict().items():
                    value.copy_(self.rounding(key, value))
        return module.to(device=self.device, dtype=getattr(torch, dtype or "float32"))

    @cached_property
    def anatomy(self) -> Anatomy:
        """The null's anatomy; for a small model it holds the whole module's tensors until
        the battery is done with them."""
        if self.plan.full:
            module = initialised_module(self.plan.config, self.seed, self.label)
            tensors = saved_state(module)
            if self.rounding is not None:
                tensors = {k: self.rounding(k, v) for k, v in tensors.items()}
            source: Any = ModuleSource(self.label, tensors)
        else:
            source = InitSource(self.plan.config, seed=self.seed, name=self.label, dtype=self.dtype)
        return build_anatomy(source, self.plan.config, self.family)

    def token_table(self) -> torch.Tensor:
        """The null's whole token table (every row of the model's vocabulary): a large
        model's null generates it alone, from the model's own config."""
        if self.plan.full:
            return self.anatomy.read(self.anatomy.token_embedding())
        source = InitSource(
            self.plan.model_config, seed=self.seed, name=self.label, dtype=self.dtype
        )
        table = build_anatomy(source, self.plan.model_config, self.family).token_embedding()
        return source.tensor(table.tensor, self.dtype)

    def battery(self) -> BatteryResult:
        if self._battery is None:
            options = (
                StreamOptions(gain_offset=self.gain_offset)
                if self.plan.full
                else StreamOptions(
                    spectra_max_n=NULL_SPECTRA_MAX_N,
                    embedding=False,
                    tying=False,
                    gain_offset=self.gain_offset,
                )
            )
            self._battery = run_battery(
                self.anatomy,
                config=self.plan.config,
                device=self.device,
                budget=self.budget,
                options=options,
            )
            # its tensors (a small model's whole module, a large one's recent generations)
            # are not held past the battery; the anatomy is rebuilt if asked for again
            self.__dict__.pop("anatomy", None)
        return self._battery


def null_key(config: Mapping[str, Any], seed: int) -> int:
    """A seed derived from the config and the null's seed (for measures that sample)."""
    return derived_seed(config_key(config), seed)
