"""Load check of ``avct serve``: a burst of simultaneous uploads against a server limited to one running job
and a small queue.

    .venv/bin/python benchmarks/serve_load.py                      # 20 requests, 1 worker, queue 3, 2 s speech
    .venv/bin/python benchmarks/serve_load.py --requests 40 --queue 5 --seconds 4

Starts ``avct serve`` as its own process on a free localhost port (bundled weights, fp32), sends
``--requests`` uploads at the same instant (one thread each), records the answers (202 accepted / 503 busy /
other), waits for the accepted jobs to finish, checks that the server still answers, and reports the server
process's peak resident memory (the kernel's VmHWM where /proc has it, else psutil samples every 0.1 s).
Prints one summary line (and ``--json FILE`` writes the figures).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from avct.io_utils import atomic_write_text  # noqa: E402
from avct.serving.client import request, submit_job, wait_for_job  # noqa: E402


class PeakMemory:
    """Peak RSS (bytes) of a process: /proc's VmHWM (exact) or psutil samples (approximate)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.sampled = pid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        try:
            import psutil
        except ImportError:
            return
        process = psutil.Process(self.pid)
        while not self._stop.wait(0.1):
            try:
                self.sampled = max(self.sampled, process.memory_info().rss)
            except psutil.Error:
                return

    def current(self) -> int | None:
        return _proc_status_kb(self.pid, "VmRSS")

    def peak(self) -> tuple[int, str]:
        self._stop.set()
        self._thread.join()
        hwm = _proc_status_kb(self.pid, "VmHWM")
        return (hwm, "VmHWM") if hwm is not None else (self.sampled, "psutil samples")


def _proc_status_kb(pid: int, field: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) * 1024 if match else None


def cut_speech(source: Path, seconds: float, out: Path) -> Path:
    import scipy.io.wavfile

    rate, samples = scipy.io.wavfile.read(source)
    scipy.io.wavfile.write(out, rate, samples[: int(seconds * rate)])
    return out


def start_server(args: argparse.Namespace, work: Path) -> tuple[subprocess.Popen, str, Path]:
    log = work / "serve.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "avct", "serve", "--port", "0", "--workers", str(args.workers),
               "--queue", str(args.queue), "--precision", args.precision, "--work-dir", str(work / "jobs")]
    with open(log, "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 300
    while not (match := re.search(r"open http://127\.0\.0\.1:(\d+)/", log.read_text())):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the server did not start:\n{log.read_text()}")
        time.sleep(0.2)
    url = f"http://127.0.0.1:{match.group(1)}"
    while True:
        try:
            request("GET", url + "/v1/config", timeout=5)
            return proc, url, log
        except OSError:
            time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--queue", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="speech per job (cut from the example)")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--image", type=Path, default=ROOT / "examples" / "astronaut.png")
    parser.add_argument("--audio", type=Path, default=ROOT / "examples" / "speech_librivox_austen_7s.wav")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="avct-serve-load-") as tmp:
        work = Path(tmp)
        speech = cut_speech(args.audio, args.seconds, work / "speech.wav")
        proc, url, log = start_server(args, work)
        memory = PeakMemory(proc.pid)
        loaded_rss = memory.current()
        try:
            start = threading.Barrier(args.requests)

            def post(_: int):
                start.wait()
                t0 = time.monotonic()
                reply = submit_job(url, args.image, speech)
                return reply, time.monotonic() - t0

            t0 = time.monotonic()
            with ThreadPoolExecutor(args.requests) as pool:
                answers = list(pool.map(post, range(args.requests)))
            codes = Counter(reply.status for reply, _ in answers)
            accepted = [reply.json()["id"] for reply, _ in answers if reply.status == 202]
            finals = [wait_for_job(url, job_id, timeout=3600, every=0.5) for job_id in accepted]
            total_s = time.monotonic() - t0
            alive = request("GET", url + "/v1/config").status == 200 and request("GET", url + "/").status == 200
            peak, how = memory.peak()
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(120)
        done = sum(f["status"] == "done" for f in finals)
        figures = {
            "requests": args.requests, "workers": args.workers, "queue": args.queue, "speech_s": args.seconds,
            "answers": dict(sorted(codes.items())), "accepted": len(accepted), "done": done,
            "failed": [f["error"] for f in finals if f["status"] == "failed"],
            "answer_s_median": float(np.median([s for _, s in answers])), "answer_s_max": max(s for _, s in answers),
            "all_finished_s": total_s, "peak_rss_mb": peak / 2**20, "peak_rss_source": how,
            "rss_after_load_mb": loaded_rss / 2**20 if loaded_rss else None, "answers_afterwards": alive,
        }
    if args.json:
        atomic_write_text(args.json, json.dumps(figures, indent=1))
    other = args.requests - codes[202] - codes[503]
    print(f"serve_load: {args.requests} requests at once -> {codes[202]} accepted (202), {codes[503]} busy (503), "
          f"{other} other; answers in {figures['answer_s_median']:.1f} s median, {figures['answer_s_max']:.1f} s max; "
          f"{done}/{len(accepted)} jobs done ({args.seconds:g} s speech, {args.workers} at a time) after "
          f"{total_s:.1f} s; peak server RSS {figures['peak_rss_mb']:.0f} MB ({how}; "
          f"{figures['rss_after_load_mb'] or float('nan'):.0f} MB after loading); "
          f"answers afterwards: {'yes' if alive else 'NO'}")


if __name__ == "__main__":
    main()
