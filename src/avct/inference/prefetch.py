"""Run a generator one step ahead in a worker thread, so that its work overlaps the consumer's.

Why: per batch of frames the renderer (OpenVINO or torch kernels, which release the GIL) and the
sharp compositor plus the video encoder (OpenCV, NumPy, x264, which also release it for most of their
time) took turns on the CPU; run side by side they fill the cores' idle moments. The worker holds at
most ``depth`` finished items, so memory stays bounded; its exceptions re-raise in the consumer, and
leaving the consumer (an error, Ctrl-C, ``close()``) stops the worker after its current item.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator, TypeVar

T = TypeVar("T")
_END = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Yield what ``items`` yields, in order, computing up to ``depth`` items ahead in a worker thread."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as e:  # handed to the consumer, raised there
            put(_Failed(e))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=work, name="avct-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()
