"""terrain.progress: trackers send rate-limited events to the installed sink, and only there."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator

import pytest

from terrain import progress
from terrain.progress import MIN_INTERVAL, ProgressEvent, Tracker


class Clock:
    """Stands in for time.monotonic inside terrain.progress."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr("terrain.progress.time.monotonic", fake)
    return fake


@pytest.fixture
def events() -> Iterator[list[ProgressEvent]]:
    """Every event sent while the test runs; the sink before it is restored after."""
    seen: list[ProgressEvent] = []
    previous = progress.install(seen.append)
    yield seen
    progress.install(previous)


def test_events_are_rate_limited_except_the_first_a_new_stage_and_the_last(
    clock: Clock, events: list[ProgressEvent]
) -> None:
    tracker = Tracker("m", "pass", total=10, unit="blocks")
    clock.now += MIN_INTERVAL / 5
    tracker.advance()  # too soon: dropped
    clock.now += MIN_INTERVAL
    tracker.advance()  # sent
    tracker.advance()  # too soon again
    tracker.advance(stage="null pass")  # a new stage is always sent
    tracker.advance(stage="null pass")  # the same stage is not new
    tracker.close()
    assert [(e.stage, e.done, e.finished) for e in events] == [
        ("pass", 0, False),
        ("pass", 2, False),
        ("null pass", 4, False),
        ("null pass", 5, True),
    ]
    assert events[1].elapsed == pytest.approx(1.2 * MIN_INTERVAL)


def test_close_sends_one_final_event_with_the_count_done(
    clock: Clock, events: list[ProgressEvent]
) -> None:
    with Tracker("m", "pass", total=3, unit="B") as tracker:
        tracker.advance(3)
        clock.now += 2.0
    tracker.close()  # a second close sends nothing
    final = events[-1]
    assert [e.finished for e in events] == [False, True]
    assert (final.done, final.total, final.fraction, final.elapsed) == (3, 3, 1.0, 2.0)


def test_a_tracker_left_by_an_error_still_sends_its_final_event(
    events: list[ProgressEvent],
) -> None:
    def read_shards() -> None:
        with Tracker("m", "pass", total=3) as tracker:
            tracker.advance()
            raise RuntimeError("unreadable shard")

    with pytest.raises(RuntimeError, match="unreadable shard"):
        read_shards()
    assert events[-1].finished
    assert events[-1].done == 1


def test_advance_from_many_threads_loses_no_unit(events: list[ProgressEvent]) -> None:
    """Under the GIL threads switch at calls: an unlocked count with any call between its
    read and its write loses thousands of units here (and any count, free-threaded)."""
    threads, each = 8, 5000
    tracker = Tracker("m", "pass", total=threads * each, unit="tensors")
    start = threading.Barrier(threads)

    def work() -> None:
        start.wait()
        for _ in range(each):
            tracker.advance()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show
    try:
        pool = [threading.Thread(target=work) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    tracker.close()
    assert tracker.done == threads * each
    assert events[-1].done == threads * each
    assert [e.done for e in events] == sorted(e.done for e in events)  # sent in order


def test_without_a_sink_nothing_is_sent_and_install_returns_the_previous_sink() -> None:
    first: list[ProgressEvent] = []
    second: list[ProgressEvent] = []
    original = progress.install(None)
    try:
        with Tracker("m", "pass") as tracker:
            tracker.advance()  # nobody listens: dropped, not queued
        assert progress.install(first.append) is None
        previous = progress.install(second.append)
        assert previous == first.append
        Tracker("m", "other").close()
        assert progress.install(previous) == second.append
        Tracker("m", "third").close()
    finally:
        progress.install(original)
    assert [e.stage for e in second] == ["other", "other"]
    assert [e.stage for e in first] == ["third", "third"]


@pytest.mark.parametrize("total", [12.0, None])
def test_an_event_survives_its_json_record(total: float | None) -> None:
    event = ProgressEvent("m", "null battery (seed 2)", 5.0, total, "seeds", 1.5, finished=True)
    assert ProgressEvent.from_record(json.loads(json.dumps(event.as_record()))) == event


@pytest.mark.parametrize(("done", "total", "fraction"), [(3, 4, 0.75), (5, 4, 1.0), (1, 0, None)])
def test_fraction_is_capped_and_unknown_without_a_total(
    done: float, total: float, fraction: float | None
) -> None:
    assert ProgressEvent("m", "s", done, total, "B", 0.0).fraction == fraction
