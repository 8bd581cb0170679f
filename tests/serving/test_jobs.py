"""JobStore on its own, with runners that stand in for the pipeline: queue bound, cancel, failure, expiry, progress."""
from __future__ import annotations

import logging
import threading

import pytest

from avct.errors import AvctError
from avct.inference.options import GenerateOptions
from avct.serving.jobs import FRONT_END_PROGRESS, Job, JobStore, QueueFull, new_job_id
from support.live_server import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_job(tmp_path, name="job") -> Job:
    folder = tmp_path / name
    folder.mkdir()
    image, audio = folder / "image.png", folder / "audio.wav"
    return Job(new_job_id(), folder, image, audio, GenerateOptions(), {str(image): "face.png"})


def enqueue(store: JobStore, job: Job) -> None:
    """What the POST route does around reading the upload: take a place, then queue the job in it."""
    store.reserve()
    store.submit(job)


class GatedRunner:
    """Reports frame 1 of 4, then waits for the test to open the gate, then reports the rest."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started: list[str] = []

    def __call__(self, job, progress) -> None:
        self.started.append(job.id)
        progress(1, 4)
        while not self.gate.wait(0.01):
            progress(1, 4)  # a real job reports every frame; this is where cancellation lands
        for done in (2, 3, 4):
            progress(done, 4)
        job.video.write_bytes(b"mp4")


@pytest.fixture
def gated(tmp_path):
    runner = GatedRunner()
    store = JobStore(runner, workers=1, queue_size=1, keep_s=60)
    store.start()
    yield store, runner
    runner.gate.set()
    store.close()


def test_queue_bound_then_done(gated, tmp_path):
    store, runner = gated
    a, b = make_job(tmp_path, "a"), make_job(tmp_path, "b")
    enqueue(store, a)
    wait_until(lambda: store.status(a.id)["status"] == "running")
    assert store.status(a.id)["progress"] == pytest.approx(FRONT_END_PROGRESS + (1 - FRONT_END_PROGRESS) / 4, abs=1e-3)
    enqueue(store, b)
    with pytest.raises(QueueFull):  # a burst beyond the queue is refused before its upload is read
        store.reserve()
    assert store.status(b.id)["status"] == "queued"
    assert store.finished_video(a.id) == ("running", None)
    runner.gate.set()
    wait_until(lambda: store.status(b.id)["status"] == "done")
    assert store.status(a.id) == {"id": a.id, "status": "done", "progress": 1.0, "error": None}
    assert store.finished_video(a.id) == ("done", a.video)


def test_delete_queued_and_running(gated, tmp_path):
    store, runner = gated
    a, b = make_job(tmp_path, "a"), make_job(tmp_path, "b")
    enqueue(store, a)
    wait_until(lambda: store.status(a.id)["status"] == "running")
    enqueue(store, b)
    assert store.delete(b.id)                       # queued: gone at once, never runs
    assert not b.folder.exists() and store.status(b.id) is None
    store.reserve()                                 # its place is free again; an upload being checked holds it
    with pytest.raises(QueueFull):
        store.reserve()
    store.release()
    assert store.delete(a.id)                       # running: stops at its next progress report
    assert store.status(a.id) is None and not store.delete(a.id)
    wait_until(lambda: not a.folder.exists())
    assert runner.started == [a.id]


def test_failures_are_one_line_and_the_store_keeps_working(tmp_path, caplog):
    def run(job, progress):
        progress(1, 2)
        if job.folder.name == "user":
            raise AvctError(f"no face found in {job.image};\n try another photo")
        if job.folder.name == "bug":
            raise ValueError("boom")
        job.video.write_bytes(b"mp4")

    store = JobStore(run, workers=1, queue_size=4)
    store.start()
    try:
        user, bug, fine = make_job(tmp_path, "user"), make_job(tmp_path, "bug"), make_job(tmp_path, "fine")
        with caplog.at_level(logging.ERROR, logger="avct.serve"):
            for job in (user, bug, fine):
                enqueue(store, job)
            wait_until(lambda: store.status(fine.id)["status"] in ("done", "failed"))
        assert store.status(user.id)["error"] == "no face found in face.png; try another photo"
        assert store.status(bug.id) == {"id": bug.id, "status": "failed", "progress": 0.51, "error": "internal error: ValueError"}
        assert "ValueError: boom" in caplog.text                     # the bug's traceback is logged
        assert store.status(fine.id)["status"] == "done"
        assert store.finished_video(user.id) == ("failed", None)
    finally:
        store.close()
    assert not any(job.folder.exists() for job in (user, bug, fine))  # close() deletes every job's files


def test_finished_jobs_expire_after_keep_s(tmp_path):
    clock = Clock()
    release = threading.Event()

    def run(job, progress):
        if job.folder.name == "slow":
            release.wait(10)
        progress(1, 1)

    store = JobStore(run, workers=1, queue_size=4, keep_s=60, clock=clock)
    store.start()
    try:
        done, slow = make_job(tmp_path, "done"), make_job(tmp_path, "slow")
        enqueue(store, done)
        wait_until(lambda: store.status(done.id)["status"] == "done")
        enqueue(store, slow)
        wait_until(lambda: store.status(slow.id)["status"] == "running")
        clock.now += 59.9
        assert store.sweep() == 0 and done.folder.exists()
        clock.now += 0.1
        assert store.sweep() == 1
        assert store.status(done.id) is None and not done.folder.exists()
        clock.now += 3600                                       # running jobs never expire
        assert store.sweep() == 0 and store.status(slow.id)["status"] == "running"
    finally:
        release.set()
        store.close()


def test_max_job_s_fails_a_slow_job(tmp_path):
    clock = Clock()

    def run(job, progress):
        progress(1, 10)
        clock.now += 5.0
        progress(2, 10)
        raise AssertionError("not reached")

    store = JobStore(run, workers=1, queue_size=1, max_job_s=4.5, clock=clock)
    store.start()
    try:
        job = make_job(tmp_path)
        enqueue(store, job)
        wait_until(lambda: store.status(job.id)["status"] == "failed")
        assert store.status(job.id)["error"] == "the job ran longer than this server's limit of 4.5 s"
    finally:
        store.close()
