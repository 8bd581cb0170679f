"""prefetch: the same items in the same order, computed ahead in a worker thread; the worker's errors
raise in the consumer, and a consumer that stops early stops the worker and closes its generator."""
from __future__ import annotations

import threading
import time

import pytest

from avct.inference.prefetch import prefetch


def test_same_items_in_order_computed_in_another_thread():
    threads = []

    def items():
        for i in range(20):
            threads.append(threading.current_thread().name)
            yield i

    assert list(prefetch(items(), depth=2)) == list(range(20))
    assert set(threads) == {"avct-prefetch"}


def test_the_worker_runs_ahead_by_at_most_depth():
    made = []

    def items():
        for i in range(10):
            made.append(i)
            yield i

    stream = prefetch(items(), depth=2)
    assert next(stream) == 0
    time.sleep(0.3)  # time for the worker to run as far ahead as it may
    assert len(made) == 4  # item 0 taken, 1 and 2 waiting, 3 made and waiting for room
    stream.close()


def test_an_error_in_the_worker_raises_in_the_consumer_after_the_items_before_it():
    def items():
        yield 1
        raise ValueError("bad batch")

    got = []
    with pytest.raises(ValueError, match="bad batch"):
        for item in prefetch(items()):
            got.append(item)
    assert got == [1]


def test_stopping_early_stops_the_worker_and_closes_the_generator():
    closed = threading.Event()

    def items():
        try:
            for i in range(1000):
                yield i
        finally:
            closed.set()

    stream = prefetch(items(), depth=1)
    assert next(stream) == 0
    stream.close()  # what leaving a for loop with an error or Ctrl-C does
    assert closed.is_set()
    assert not any(t.name == "avct-prefetch" for t in threading.enumerate())
