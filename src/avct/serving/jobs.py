"""Jobs of the server: a store (dict + lock), a bounded wait queue, worker threads and an expiry sweep.

Threads, not processes: the model is loaded once and shared by the workers (PyTorch releases the GIL in its
kernels), and a job's progress is a plain attribute the HTTP routes read. A job is cancelled (DELETE) or
timed out cooperatively: the progress callback, called after every frame, raises; the pipeline writes its
mp4 atomically, so an aborted job leaves nothing half-written. Anything a job raises fails that job only.
"""
from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import AvctError
from ..inference.options import GenerateOptions

log = logging.getLogger("avct.serve")

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
FRONT_END_PROGRESS = 0.02  # shown while the photo and speech are analysed, before the first frame

Progress = Callable[[int, int], None]
Runner = Callable[["Job", Progress], None]  # generates job.video, calling progress(frames_done, frames_total)


class QueueFull(Exception):
    """No room in the wait queue (HTTP 503)."""


class JobCancelled(Exception):
    """Raised inside a running job once it has been deleted; not an error."""


def new_job_id() -> str:
    return uuid.uuid4().hex


def user_message(error: BaseException, names: dict[str, str]) -> str:
    """The error's one line, with server-side upload paths replaced by the names the client sent (a name
    with line breaks in it stays on the one line)."""
    text = str(error)
    for path, name in names.items():
        text = text.replace(path, name)
    return " ".join(text.split())


@dataclass
class Job:
    """One accepted request: its inputs in ``folder`` and what the API reports about it."""

    id: str
    folder: Path
    image: Path
    audio: Path
    options: GenerateOptions
    names: dict[str, str] = field(default_factory=dict)  # upload path -> client's file name (for messages)
    status: str = QUEUED
    progress: float = 0.0
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    cancelled: bool = False

    @property
    def video(self) -> Path:
        return self.folder / "video.mp4"

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "progress": round(self.progress, 4), "error": self.error}


class JobStore:
    """Accepts jobs up to the queue bound, runs them on ``workers`` threads, forgets finished ones after ``keep_s``.

    ``queue_size`` bounds the jobs waiting plus the uploads being read and checked (see ``reserve``)."""

    def __init__(self, run: Runner, *, workers: int = 1, queue_size: int = 8, keep_s: float = 3600.0,
                 max_job_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._run = run
        self._workers = workers
        self._queue_size = queue_size
        self._keep_s = keep_s
        self._max_job_s = max_job_s
        self._clock = clock
        self._jobs: dict[str, Job] = {}
        self._waiting: deque[Job] = deque()
        self._reserved = 0  # queue places held by uploads being read and checked
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closing = False
        self._stop_sweeping = threading.Event()
        self._threads: list[threading.Thread] = []

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        sweep_every = min(30.0, max(0.2, self._keep_s / 4))
        self._threads = [threading.Thread(target=self._work, name=f"avct-worker-{i}", daemon=True)
                         for i in range(self._workers)]
        self._threads.append(threading.Thread(target=self._sweep_loop, args=(sweep_every,), name="avct-sweeper",
                                              daemon=True))
        for thread in self._threads:
            thread.start()

    def close(self, timeout: float = 60.0) -> None:
        """Stop taking work, cancel running jobs, wait for the workers, delete every job's files."""
        with self._wake:
            self._closing = True
            for job in self._jobs.values():
                job.cancelled = True
            self._waiting.clear()
            self._wake.notify_all()
        self._stop_sweeping.set()
        for thread in self._threads:
            thread.join(timeout)
        with self._lock:
            jobs, self._jobs = list(self._jobs.values()), {}
        for job in jobs:
            shutil.rmtree(job.folder, ignore_errors=True)

    # ---- what the routes call --------------------------------------------------------------------
    def reserve(self) -> None:
        """Take a queue place for an upload about to be read and checked (QueueFull if none is free), so that
        a burst beyond the queue is refused at once instead of being read; ``submit`` or ``release`` gives it back."""
        with self._lock:
            if self._closing or len(self._waiting) + self._reserved >= self._queue_size:
                raise QueueFull
            self._reserved += 1

    def release(self) -> None:
        """Give back a place taken with ``reserve`` (the upload was refused)."""
        with self._lock:
            self._reserved -= 1

    def submit(self, job: Job) -> None:
        """Queue ``job`` in the place taken with ``reserve``."""
        with self._wake:
            self._reserved -= 1
            if self._closing:
                raise QueueFull
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._wake.notify()

    def status(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return None if job is None else job.public()

    def finished_video(self, job_id: str) -> tuple[str | None, Path | None]:
        """(status, path of the finished mp4): the path only when the job is done."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None, None
            return job.status, job.video if job.status == DONE else None

    def delete(self, job_id: str) -> bool:
        """Forget a job; a queued one never runs, a running one stops at its next frame and its files go then."""
        with self._lock:
            job = self._jobs.pop(job_id, None)
            if job is None:
                return False
            job.cancelled = True
            if job.status == QUEUED:
                self._waiting.remove(job)
            running = job.status == RUNNING
        if not running:
            shutil.rmtree(job.folder, ignore_errors=True)
        return True

    def sweep(self) -> int:
        """Delete finished jobs older than ``keep_s``; returns how many."""
        now = self._clock()
        with self._lock:
            expired = [job for job in self._jobs.values()
                       if job.finished_at is not None and now - job.finished_at >= self._keep_s]
            for job in expired:
                del self._jobs[job.id]
        for job in expired:
            shutil.rmtree(job.folder, ignore_errors=True)
        return len(expired)

    # ---- worker side -----------------------------------------------------------------------------
    def _sweep_loop(self, every_s: float) -> None:
        while not self._stop_sweeping.wait(every_s):
            self.sweep()

    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._waiting and not self._closing:
                    self._wake.wait()
                if self._closing:
                    return
                job = self._waiting.popleft()
                job.status, job.progress, job.started_at = RUNNING, FRONT_END_PROGRESS, self._clock()
            self._execute(job)

    def _execute(self, job: Job) -> None:
        error: str | None = None
        try:
            self._run(job, self._progress_reporter(job))
        except JobCancelled:
            pass
        except AvctError as e:
            error = user_message(e, job.names)
        except Exception as e:  # a bug: the job fails, the server keeps serving
            log.exception("job %s failed", job.id)
            error = f"internal error: {type(e).__name__}"
        with self._lock:
            cancelled = job.cancelled
            if not cancelled:
                job.status, job.error, job.finished_at = (FAILED if error else DONE), error, self._clock()
                if error is None:
                    job.progress = 1.0
        if cancelled:
            shutil.rmtree(job.folder, ignore_errors=True)
        else:
            log.info("job %s %s after %.1f s%s", job.id, job.status, job.finished_at - job.started_at,
                     f": {error}" if error else "")

    def _progress_reporter(self, job: Job) -> Progress:
        def report(done: int, total: int) -> None:
            if job.cancelled:
                raise JobCancelled
            if self._max_job_s is not None and self._clock() - job.started_at > self._max_job_s:
                raise AvctError(f"the job ran longer than this server's limit of {self._max_job_s:g} s")
            fraction = done / total if total else 0.0
            # below 1 until the mp4 is complete (muxing follows the last frame)
            job.progress = min(0.99, FRONT_END_PROGRESS + (1 - FRONT_END_PROGRESS) * fraction)
        return report
