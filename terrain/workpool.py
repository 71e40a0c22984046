"""Spreading independent linear-algebra tasks over the CPU threads a run was given.

LAPACK's eigensolvers scale poorly with threads inside one call (at n = 1024 two threads
give 1.57×, and at n = 384 they are slower than one), while independent calls on
separate threads scale almost linearly (1.66× on two cores). So a measure with many
independent matrices runs one single-threaded call per thread: `task_pool` gives an
executor of torch's thread count and pins torch's and the BLAS/OpenMP pools at one
thread meanwhile, restoring them after. With one thread, or on an accelerator (whose
kernels are asynchronous already), tasks run inline at submission, in order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import torch
from threadpoolctl import threadpool_limits

P = ParamSpec("P")
T = TypeVar("T")


class InlineExecutor(Executor):
    """Runs each task when it is submitted and returns its settled future."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as e:  # raised again by future.result(), where the caller looks
            future.set_exception(e)
        return future


@contextmanager
def task_pool(device: str | torch.device, threads: int | None = None) -> Iterator[Executor]:
    """An executor for independent tasks on `device`: `threads` workers (default torch's
    thread count) on the CPU, each running its kernels on one thread; inline otherwise."""
    workers = threads if threads is not None else torch.get_num_threads()
    if torch.device(device).type != "cpu" or workers <= 1:
        yield InlineExecutor()
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1), ThreadPoolExecutor(workers) as pool:
            yield pool
    finally:
        torch.set_num_threads(before)


class StageClock:
    """Seconds per named stage, summed over every thread that ran it (thread-safe)."""

    def __init__(self, into: dict[str, float]) -> None:
        self.seconds = into
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def timed(self, stage: str, fn: Callable[P, T]) -> Callable[P, T]:
        """`fn`, adding the seconds of each call to `stage`."""

        def run(*args: P.args, **kwargs: P.kwargs) -> T:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(stage, time.perf_counter() - start)

        return run
