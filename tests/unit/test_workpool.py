"""The task pool: inline at one thread, pinned kernels in the pool, errors where they are read."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from terrain.workpool import InlineExecutor, StageClock, task_pool


def _fail() -> None:
    raise ValueError("layer 3: W_Q does not split into heads")


def test_one_thread_runs_tasks_inline_in_order() -> None:
    order: list[int] = []
    with task_pool("cpu", threads=1) as pool:
        assert isinstance(pool, InlineExecutor)
        futures = [pool.submit(order.append, i) for i in range(3)]
        assert order == [0, 1, 2]  # ran at submission
    assert all(f.done() for f in futures)


def test_an_accelerator_runs_tasks_inline() -> None:
    with task_pool("cuda", threads=4) as pool:
        assert isinstance(pool, InlineExecutor)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_failing_task_raises_where_its_result_is_read(threads: int) -> None:
    with task_pool("cpu", threads=threads) as pool:
        future = pool.submit(_fail)
        with pytest.raises(ValueError, match="layer 3: W_Q does not split"):
            future.result()


def test_pool_tasks_run_on_worker_threads_with_one_kernel_thread() -> None:
    before = torch.get_num_threads()
    with task_pool("cpu", threads=2) as pool:
        assert isinstance(pool, ThreadPoolExecutor)
        names = {pool.submit(lambda: threading.current_thread().name).result() for _ in range(4)}
        kernel_threads = pool.submit(torch.get_num_threads).result()
    assert threading.current_thread().name not in names
    assert kernel_threads == 1
    assert torch.get_num_threads() == before


def test_torch_threads_are_restored_when_a_task_fails() -> None:
    before = torch.get_num_threads()
    with pytest.raises(ValueError, match="layer 3"), task_pool("cpu", threads=2) as pool:
        pool.submit(_fail).result()
    assert torch.get_num_threads() == before


def test_stage_clock_sums_over_threads() -> None:
    seconds: dict[str, float] = {}
    clock = StageClock(seconds)
    timed = clock.timed("spectra", lambda x: x * 2)
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(timed, range(100))) == [2 * i for i in range(100)]
    clock.add("read", 1.5)
    assert seconds["read"] == 1.5
    assert seconds["spectra"] > 0


def test_budgeted_pool_never_holds_more_than_its_budget() -> None:
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from terrain.workpool import BudgetedPool, MemoryBudget

    held = 0
    peak = 0
    lock = threading.Lock()

    def task(cost: int) -> None:
        nonlocal held, peak
        with lock:
            held += cost
            peak = max(peak, held)
        time.sleep(0.01)
        with lock:
            held -= cost

    budget = MemoryBudget(100)
    with ThreadPoolExecutor(4) as executor:
        pool = BudgetedPool(executor, budget)
        futures = [
            pool.submit(f"task {i}", c, task, c) for i, c in enumerate([60, 50, 30, 90, 10] * 4)
        ]
        for f in futures:
            f.result()
    assert peak <= budget.bytes
    assert pool.peak <= budget.bytes
    assert peak > 60  # it did run tasks side by side where they fit


def test_a_task_above_the_whole_budget_is_refused_naming_the_option() -> None:
    from terrain.workpool import BudgetedPool, BudgetError, InlineExecutor, MemoryBudget

    pool = BudgetedPool(InlineExecutor(), MemoryBudget(1 << 30))
    with pytest.raises(
        BudgetError,
        match=r"spectrum of tensor 'w' needs 2 GiB of working memory, more than the budget of "
        r"1 GiB; raise it with --memory-budget",
    ):
        pool.submit("spectrum of tensor 'w'", 2 << 30, print)


def test_the_battery_holds_a_tiny_budget(tiny_bert: Path) -> None:
    """A budget far below the default still gives every value, and the pool's peak stays
    within it (tasks wait for each other instead)."""
    from terrain.anatomy import build_anatomy
    from terrain.battery import run_battery
    from terrain.checkpoint import Checkpoint
    from terrain.workpool import MemoryBudget

    ckpt = Checkpoint(tiny_bert, name="tiny-bert")
    anatomy = build_anatomy(ckpt, ckpt.config)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        roomy = run_battery(anatomy, config=ckpt.config)
        budget = MemoryBudget(200 << 20)
        tight = run_battery(anatomy, config=ckpt.config, budget=budget)
    finally:
        torch.set_num_threads(before)
    assert tight.peak_working_bytes <= budget.bytes
    assert {k: v.as_dict() for k, v in tight.spectra.items()} == {
        k: v.as_dict() for k, v in roomy.spectra.items()
    }
    assert tight.sparsity == roomy.sparsity
