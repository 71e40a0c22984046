"""Spreading independent linear-algebra tasks over the CPU threads a run was given, within a
memory budget.

LAPACK's eigensolvers scale poorly with threads inside one call (at n = 1024 two threads
give 1.57×, and at n = 384 they are slower than one), while independent calls on
separate threads scale almost linearly (1.66× on two cores). So a measure with many
independent matrices runs one single-threaded call per thread: `task_pool` gives an
executor of torch's thread count and pins torch's and the BLAS/OpenMP pools at one
thread meanwhile, restoring them after. With one thread, or on an accelerator (whose
kernels are asynchronous already), tasks run inline at submission, in order.

`BudgetedPool` adds the memory side: each task states the bytes its working set needs
(a float64 Gram and its eigensolver copy, say), and a submission waits until the tasks
in flight leave room for it, so the pool never holds more than the budget. A task larger
than the whole budget is refused with a `BudgetError` naming it and the option that
raises the budget, rather than run and swap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import torch
from threadpoolctl import threadpool_limits

from terrain.errors import TerrainError

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
    if torch.device(device).type != "cpu":
        yield InlineExecutor()
        return
    if workers <= 1:  # one thread given: BLAS and OpenMP kept to it too, as in a pool task
        with threadpool_limits(limits=1):
            yield InlineExecutor()
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1), ThreadPoolExecutor(workers) as pool:
            yield pool
    finally:
        torch.set_num_threads(before)


@contextmanager
def single_threaded() -> Iterator[None]:
    """torch, BLAS and OpenMP at one thread meanwhile, for a run of small kernels: at
    128 × 128 MKL's QR takes 0.85 ms on one thread and 7–11 ms on two (their spin-waits
    and fork-join cost more than the work), so a symmetry test's hundreds of draws per
    block cost seconds instead of a fraction of one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
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


class BudgetError(TerrainError):
    """One task needs more memory than the whole budget allows."""


@dataclass(frozen=True)
class MemoryBudget:
    """Bytes of working set (beyond the tensors mapped from the checkpoint) a pass may hold,
    and the command-line option that sets it (named in every refusal)."""

    bytes: int
    option: str = "--memory-budget"

    def describe(self) -> str:
        return f"{self.bytes / (1 << 30):.3g} GiB"


class BudgetedPool:
    """Submit tasks with their working-set cost; at most `budget.bytes` are in flight.

    The first task in flight may be alone above nothing but the budget itself: a task
    whose cost exceeds the budget raises BudgetError at submission.
    """

    def __init__(self, executor: Executor, budget: MemoryBudget) -> None:
        self.executor = executor
        self.budget = budget
        self._in_flight = 0
        self._cond = threading.Condition()
        self.peak = 0  # the most bytes in flight at once, for reports and tests

    def submit(
        self, what: str, cost: int, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[T]:
        """Run fn(*args, **kwargs) once `cost` bytes fit; `what` names the task in errors."""
        if cost > self.budget.bytes:
            raise BudgetError(
                f"{what} needs {cost / (1 << 30):.3g} GiB of working memory, more than the "
                f"budget of {self.budget.describe()}; raise it with {self.budget.option}"
            )
        with self._cond:
            while self._in_flight and self._in_flight + cost > self.budget.bytes:
                self._cond.wait()
            self._in_flight += cost
            self.peak = max(self.peak, self._in_flight)

        def run() -> T:
            try:
                return fn(*args, **kwargs)
            finally:
                with self._cond:
                    self._in_flight -= cost
                    self._cond.notify_all()

        return self.executor.submit(run)
