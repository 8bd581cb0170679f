"""Work ahead of the consumer in worker threads, so that it overlaps the consumer's own work.

Why: per batch of frames the renderer (OpenVINO or torch kernels, which release the GIL) and the
sharp compositor plus the video encoder (OpenCV, NumPy, x264, which also release it for most of their
time) took turns on the CPU; run side by side they fill the cores' idle moments.

``parallel_map`` runs a function over a sequence of inputs in worker threads, results in order: on a
2-core CPU two renderer threads with one intra-op thread each do the same frames with less CPU than one
renderer thread with two (no barrier between the halves of every operation, nor spinning threads),
leaving more of the cores to the compositor. It holds at most ``depth`` items that the consumer has not
taken yet (started or finished), so memory stays bounded; an exception re-raises in the consumer in its
item's place, and leaving the consumer (an error, Ctrl-C, ``close()``) stops the workers after their
current item.
"""
from __future__ import annotations

import threading
from typing import Callable, Iterable, Iterator, TypeVar

A = TypeVar("A")
T = TypeVar("T")


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def parallel_map(function: Callable[[A], T], inputs: Iterable[A], *, workers: int = 2, depth: int | None = None,
                 initializer: Callable[[], None] | None = None, name: str = "avct-worker") -> Iterator[T]:
    """Yield ``function(x)`` for each x of ``inputs``, in order, computed in ``workers`` threads.

    The threads take the next input in turn (``inputs`` is iterated in them, one at a time, so a
    generator's own work runs there too) and work on up to ``depth`` (default: ``workers``) items
    beyond what was yielded. ``initializer()`` runs first in each thread (e.g. its torch thread count)."""
    depth = max(1, workers if depth is None else depth)
    source = iter(inputs)
    done: dict[int, object] = {}       # index -> result or _Failed, until yielded
    failed_start: list[BaseException] = []  # an initializer's error, raised in the consumer
    state = {"next": 0, "end": None}   # next index to hand out; index of the end (None: not reached)
    lock = threading.Condition()
    room = threading.Semaphore(depth)  # items started but not yet yielded
    stop = threading.Event()

    def work() -> None:
        try:
            if initializer is not None:
                initializer()
        except BaseException as e:  # handed to the consumer, raised there
            with lock:
                failed_start.append(e)
                lock.notify_all()
            return
        while True:
            room.acquire()
            if stop.is_set():
                return
            with lock:
                if state["end"] is not None:
                    room.release()
                    return
                index = state["next"]
                try:
                    item = next(source)  # under the lock: a generator is never entered twice at once
                except StopIteration:
                    state["end"] = index
                    lock.notify_all()
                    room.release()
                    return
                except BaseException as e:  # raised in the consumer in this item's place; the end
                    state["end"] = index + 1
                    done[index] = _Failed(e)
                    lock.notify_all()
                    return
                state["next"] = index + 1
            try:
                result = function(item)
            except BaseException as e:
                result = _Failed(e)
            with lock:
                done[index] = result
                lock.notify_all()

    threads = [threading.Thread(target=work, name=name, daemon=True) for _ in range(max(1, workers))]
    for t in threads:
        t.start()
    try:
        index = 0
        while True:
            with lock:
                while index not in done and not failed_start and state["end"] != index:
                    lock.wait()
                if failed_start:
                    raise failed_start[0]
                if index not in done:
                    return  # the end
                result = done.pop(index)
            room.release()
            if isinstance(result, _Failed):
                raise result.error
            yield result  # type: ignore[misc]
            index += 1
    finally:
        stop.set()
        for _ in threads:
            room.release()  # wake workers waiting for room
        for t in threads:
            t.join()
        close = getattr(source, "close", None)
        if close is not None:
            close()
