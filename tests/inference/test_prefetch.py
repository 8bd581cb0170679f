"""parallel_map: the same results in the same order, computed ahead in worker threads within a bounded
depth; errors raise in the consumer in their item's place, and a consumer that stops early stops the
workers and closes the input generator."""
from __future__ import annotations

import threading
import time

import pytest

from avct.inference.prefetch import parallel_map


def _same(item):
    return item


def test_a_generator_is_run_ahead_in_a_worker_thread_in_order():
    threads = []

    def items():
        for i in range(20):
            threads.append(threading.current_thread().name)
            yield i

    assert list(parallel_map(_same, items(), workers=1, depth=3)) == list(range(20))
    assert set(threads) == {"avct-worker"}


def test_an_error_in_the_inputs_raises_in_the_consumer_after_the_items_before_it():
    def items():
        yield 1
        raise ValueError("bad batch")

    got = []
    with pytest.raises(ValueError, match="bad batch"):
        for item in parallel_map(_same, items(), workers=2):
            got.append(item)
    assert got == [1]


def test_stopping_early_stops_the_workers_and_closes_the_generator():
    closed = threading.Event()

    def items():
        try:
            for i in range(1000):
                yield i
        finally:
            closed.set()

    stream = parallel_map(_same, items(), workers=2)
    assert next(stream) == 0
    stream.close()  # what leaving a for loop with an error or Ctrl-C does
    assert closed.is_set()
    assert not any(t.name == "avct-worker" for t in threading.enumerate())


def test_parallel_map_gives_every_result_in_order_from_several_threads():
    threads = set()

    def slow_square(x: int) -> int:
        threads.add((threading.current_thread().name, threading.get_ident()))
        time.sleep(0.02 * (x % 3))  # later inputs often finish first
        return x * x

    assert list(parallel_map(slow_square, range(30), workers=3)) == [x * x for x in range(30)]
    assert len(threads) > 1 and all(name == "avct-worker" for name, _ in threads)


def test_parallel_map_runs_the_initializer_in_each_worker_and_stays_within_depth():
    seen, started = [], []

    def work(x: int) -> int:
        started.append(x)
        return x

    stream = parallel_map(work, range(100), workers=2, depth=3,
                          initializer=lambda: seen.append(threading.current_thread().name))
    assert next(stream) == 0
    time.sleep(0.3)
    assert len(started) == 4  # item 0 taken, 3 more started at most
    stream.close()
    assert seen == ["avct-worker", "avct-worker"]
    assert not any(t.name == "avct-worker" for t in threading.enumerate())


def test_parallel_map_raises_an_error_in_its_items_place():
    def work(x: int) -> int:
        if x == 5:
            raise ValueError("bad chunk")
        return x

    got = []
    with pytest.raises(ValueError, match="bad chunk"):
        for item in parallel_map(work, range(10), workers=2):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]
