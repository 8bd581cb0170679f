"""Faults: a server killed with SIGKILL mid-job and restarted, the disk filling up while a video is written,
a batch killed mid-row and run again. The processes killed here run avct's server and batch machinery over
a stand-in for the networks (tests/support/stand_in.py) that writes real mp4s slowly, so that there is a
half-written video to find; what is under test is what survives a kill, not the networks."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avct.errors import AvctError
from avct.serving.client import download_video, job_status, request, submit_job, wait_for_job
from avct.video.reader import probe_video

from support.hostile_corpus import one_error_line
from support.live_server import wait_until

STAND_IN = Path(__file__).resolve().parents[1] / "support" / "stand_in.py"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                     os.environ.get("PYTHONPATH", "")])}


def _start(*args: str, log: Path) -> subprocess.Popen:
    with open(log, "a") as out:
        return subprocess.Popen([sys.executable, str(STAND_IN), *args], stdout=out, stderr=subprocess.STDOUT, env=ENV)


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL


def _serving(work: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port_file = work.parent / "port"
    port_file.unlink(missing_ok=True)
    proc = _start("serve", str(work), str(port_file), "0.05", log=log)
    try:
        wait_until(lambda: port_file.exists() or proc.poll() is not None, timeout=120, every=0.05)
        assert proc.poll() is None, log.read_text()
        url = f"http://127.0.0.1:{port_file.read_text()}"
        wait_until(lambda: _answers(url), timeout=60, every=0.05)
    except BaseException:
        proc.kill()
        proc.wait(30)
        raise
    return proc, url


def _answers(url: str) -> bool:
    try:
        return request("GET", f"{url}/v1/limits", timeout=5).status == 200
    except OSError:
        return False


FAST = {"crop": "false", "pose": "0,0,0,0,25,250"}  # no face detection while the upload is checked


def test_server_killed_mid_job_then_restarted(good_inputs, tmp_path):
    work, log = tmp_path / "work", tmp_path / "serve.log"
    proc, url = _serving(work, log)
    try:
        job_id = submit_job(url, *good_inputs, **FAST).json()["id"]
        folder = work / job_id
        # mid-job: frames written, the mp4 only as the writer's hidden temporary file
        wait_until(lambda: job_status(url, job_id).json()["progress"] > 0.3, timeout=120, every=0.05)
        _kill(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (folder / "video.mp4").exists() and list(folder.glob(".video.mp4.*.mp4"))

    proc, url = _serving(work, log)  # the same work dir
    try:
        assert not folder.exists()                       # the dead server's job: gone, files and all
        assert job_status(url, job_id).status == 404
        new_id = submit_job(url, *good_inputs, **FAST).json()["id"]
        assert wait_for_job(url, new_id, timeout=120)["status"] == "done"
        info = probe_video(download_video(url, new_id, tmp_path / "new.mp4"))
        assert info.codec == "h264" and info.frame_count == 30
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


def _manifest(tmp_path: Path, good_inputs, rows: int) -> Path:
    face, voice = good_inputs
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("image,audio,output\n" + "".join(f"{face},{voice},r{i}.mp4\n" for i in range(1, rows + 1)))
    return manifest


def test_batch_killed_mid_row_then_run_again(good_inputs, tmp_path):
    manifest, out, log = _manifest(tmp_path, good_inputs, 3), tmp_path / "out", tmp_path / "batch.log"
    proc = _start("batch", str(manifest), str(out), "0.05", log=log)
    try:  # killed while row 2 is half-written (row 1 done)
        wait_until(lambda: (out / "r1.mp4").exists() and list(out.glob(".r2.mp4.*.mp4")) or proc.poll() is not None,
                   timeout=120, every=0.02)
        _kill(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (out / "r2.mp4").exists() and list(out.glob(".r2.mp4.*.mp4"))

    again = subprocess.run([sys.executable, str(STAND_IN), "batch", str(manifest), str(out), "0"], env=ENV,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"3 rows: 2 done, 1 skipped, 0 failed; report: {out / 'report.csv'}"
    report = (out / "report.csv").read_text().splitlines()
    assert [line.split(",")[4] for line in report[1:]] == ["skipped", "done", "done"]
    assert sorted(p.name for p in out.iterdir()) == ["r1.mp4", "r2.mp4", "r3.mp4", "report.csv"]  # no temporary
    assert all(probe_video(out / f"r{i}.mp4").frame_count == 25 for i in (1, 2, 3))


class _DiskFull:
    """An av module whose containers opened for writing go to a file that takes ``budget`` bytes, then fails
    with ENOSPC, as a full disk does."""

    def __init__(self, budget: int) -> None:
        import av
        import io

        self._av, self._budget = av, budget

        class Full(io.FileIO):
            def write(inner, data):
                if inner.tell() + len(data) > budget:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return super().write(data)

        self._file = Full

    def __getattr__(self, name):
        return getattr(self._av, name)

    def open(self, target, mode="r", **kwargs):
        return self._av.open(self._file(target, "w+") if mode == "w" else target, mode, **kwargs)


def test_disk_full_while_writing_a_video_is_one_line_and_leaves_nothing(good_inputs, tmp_path, monkeypatch, capsys):
    from avct.video import writer

    full = _DiskFull(40_000)
    monkeypatch.setattr(writer, "av_module", lambda: full)
    noise = np.random.default_rng(0).integers(0, 256, (30, 128, 128, 3), dtype=np.uint8)
    with pytest.raises(AvctError) as caught:
        writer.write_video(tmp_path / "out.mp4", noise, audio_path=good_inputs[1], preset="ultrafast")
    assert str(caught.value) == f"cannot write video {tmp_path / 'out.mp4'}: No space left on device"
    assert list(tmp_path.iterdir()) == []

    # the report of a batch, a phoneme file: Python's own writes
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    from avct.cli import main

    monkeypatch.setattr(Path, "write_text", no_space)
    assert main(["phonemes", str(good_inputs[1]), "-o", str(tmp_path / "words.json")]) == 1
    assert one_error_line(capsys) == f"cannot write {tmp_path / 'words.json'}: No space left on device"
    assert list(tmp_path.iterdir()) == []


FULL_DISK_SCRIPT = """
import json, os, sys
import numpy as np
from avct.cli import main
from avct.errors import AvctError
from avct.video.writer import write_video
disk, voice = sys.argv[1], sys.argv[2]
result = {}
try:
    frames = np.random.default_rng(0).integers(0, 256, (200, 128, 128, 3), dtype=np.uint8)
    write_video(os.path.join(disk, "out.mp4"), frames, audio_path=voice, preset="ultrafast")
    result["video"] = "written"
except AvctError as e:
    result["video"] = str(e)
result["left_after_video"] = sorted(os.listdir(disk))
with open(os.path.join(disk, "filler"), "wb", buffering=0) as f:   # the disk full to the last byte
    try:
        while True:
            f.write(b"x" * 4096)
    except OSError:
        pass
result["phonemes_exit"] = main(["phonemes", voice, "-o", os.path.join(disk, "words.json")])
result["left_after_phonemes"] = sorted(os.listdir(disk))
print(json.dumps(result))
"""


def test_a_real_full_disk(good_inputs, tmp_path):
    """The same on a real 256 KB tmpfs (mounted in a user and mount namespace of its own; skipped where the
    kernel or the container does not allow one)."""
    probe = subprocess.run(["unshare", "-Urm", "sh", "-c", f"mount -t tmpfs -o size=256k tmpfs {tmp_path}"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no tmpfs in a user namespace here: {probe.stderr.decode().strip()}")
    script = tmp_path / "full.py"
    script.write_text(FULL_DISK_SCRIPT)
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = subprocess.run(["unshare", "-Urm", "sh", "-c", 'mount -t tmpfs -o size=256k tmpfs "$1" && '
                           'exec "$2" "$3" "$1" "$4"', "sh", str(disk), sys.executable, str(script),
                           str(good_inputs[1])], capture_output=True, text=True, timeout=300, env=ENV)
    assert proc.returncode == 0, proc.stderr
    *notes, last = proc.stdout.strip().splitlines()
    result = json.loads(last)
    assert result["video"] == f"cannot write video {disk / 'out.mp4'}: No space left on device"
    assert result["left_after_video"] == []
    assert result["phonemes_exit"] == 1 and result["left_after_phonemes"] == ["filler"]
    assert proc.stderr == f"avct: error: cannot write {disk / 'words.json'}: No space left on device\n"
