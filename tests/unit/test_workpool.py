"""The task pool: inline at one thread, pinned kernels in the pool, errors where they are read."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

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
