"""The hostile corpus (tests/support/hostile_corpus.py) through the real command line and a real server: what
happens to each file, how long it takes and how much memory the process needs at its peak.

    .venv/bin/python benchmarks/hostile_inputs.py                 # CLI and server, markdown table on stdout
    .venv/bin/python benchmarks/hostile_inputs.py --no-server --json hostile.json
    .venv/bin/python benchmarks/hostile_inputs.py --src /tmp/old/src   # another checkout's avct (a before/after)

Command line: each case in a fresh process (``python -m avct generate``, ``avct batch`` for manifests), with
the bundled weights; a photo case is paired with 1 s of good speech, a speech case with the example photo; a
case avct accepts runs to its video. Peak memory: GNU time's maximum resident set of the process (and of the
speech front end's process it waits for), which includes Python, torch and the models. Server:
``avct serve`` in its own process with the command line's speech limit, every photo and speech case posted
once, the accepted jobs waited for; its peak is VmHWM from /proc.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from support.hostile_corpus import Case, all_cases, inputs, write_all  # noqa: E402


def run_measured(argv: list[str], env: dict, timeout: float = 900) -> dict:
    """``python -m avct ARGV`` with its wall time and peak RSS. The peak comes from /usr/bin/time (GNU time's
    %M, the wait4 ru_maxrss of the process and its waited children) rather than from this process's own
    wait4: a child forked from a large parent starts with the parent's high-water mark."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        peak = Path(scratch) / "peak"
        proc = subprocess.run(["/usr/bin/time", "-q", "-f", "%M", "-o", str(peak), sys.executable, "-m", "avct", *argv],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True, timeout=timeout)
        kb = int(peak.read_text().split()[-1])
    return {"exit": proc.returncode, "stderr": proc.stderr, "seconds": time.perf_counter() - start, "peak_mb": kb / 1024}


def cli_argv(case: Case, root: Path, out: Path) -> list[str]:
    face, voice = inputs(root)
    if case.kind == "image":
        return ["generate", "--image", str(case.path), "--audio", str(voice), "-o", str(out / "out.mp4"), "-q"]
    if case.kind == "audio":
        return ["generate", "--image", str(face), "--audio", str(case.path), "-o", str(out / "out.mp4"), "-q"]
    if case.kind == "pose_video":
        return ["generate", "--image", str(face), "--audio", str(voice), "--pose-from", str(case.path), "-o",
                str(out / "out.mp4"), "-q"]
    if case.kind == "checkpoint":
        return ["generate", "--image", str(face), "--audio", str(voice), "--checkpoint", str(case.path), "-o",
                str(out / "out.mp4"), "-q"]
    return ["batch", str(case.path), "-o", str(out / "batch"), "-q"]


def outcome(result: dict, case: Case, out: Path) -> str:
    report = out / "batch" / "report.csv"
    if case.kind == "manifest" and report.is_file():  # the rows' fates, each distinct reason once
        import csv
        from collections import Counter

        with open(report, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        statuses = ", ".join(f"{n} {s}" for s, n in Counter(r["status"] for r in rows).items())
        reasons = list(dict.fromkeys(r["reason"].replace(f"{case.path.parent}/", "") for r in rows
                                     if r["status"] == "failed"))
        shown = "; ".join(reasons[:2]) + (f"; and {len(reasons) - 2} more" if len(reasons) > 2 else "")
        return f"exit {result['exit']}, rows: {statuses}" + (f" ({shown})" if reasons else "")
    err = result["stderr"].strip()
    lines = [line for line in err.splitlines() if line.strip()]
    if "Traceback" in err:
        return f"TRACEBACK ({lines[-1][:120] if lines else ''})"
    produced = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    errors = [line for line in lines if line.startswith("avct: error: ")]
    if result["exit"] == 0:
        return f"exit 0, {len(produced)} file(s): {', '.join(produced)[:80]}"
    text = errors[0][len("avct: error: "):] if errors else (lines[-1] if lines else "")
    text = text.replace(str(case.path), case.path.name)
    extra = "" if len(lines) == 1 else f" [+{len(lines) - 1} more stderr lines]"
    left = f" [left: {', '.join(produced)}]" if produced else ""
    return f"exit {result['exit']}: {text}{extra}{left}"


def server_rows(cases: list[Case], root: Path, env: dict) -> tuple[list[dict], dict]:
    from avct.serving.client import request, submit_job, wait_for_job

    face, voice = inputs(root)
    work = Path(tempfile.mkdtemp(prefix="avct-hostile-serve-"))
    log = work.parent / f"{work.name}.log"
    proc = subprocess.Popen([sys.executable, "-m", "avct", "serve", "--port", "0", "--max-audio-s", "3600",
                             "--queue", "64", "--work-dir", str(work / "jobs")], stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 300
    while not (match := re.search(r"open http://127\.0\.0\.1:(\d+)/", log.read_text())):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(log.read_text())
        time.sleep(0.2)
    url = f"http://127.0.0.1:{match.group(1)}"
    rows, accepted = [], []
    try:
        for case in cases:
            if case.kind not in ("image", "audio"):
                continue
            image, audio = (case.path, voice) if case.kind == "image" else (face, case.path)
            start = time.perf_counter()
            reply = submit_job(url, image, audio)
            row = {"id": case.id, "status": reply.status, "seconds": time.perf_counter() - start,
                   "detail": reply.json().get("detail") if reply.status != 202 else None}
            if reply.status == 202:
                accepted.append((row, reply.json()["id"]))
            rows.append(row)
        for row, job_id in accepted:
            row["job"] = wait_for_job(url, job_id, timeout=900)
        alive = request("GET", f"{url}/v1/limits").status
        hwm = _vm_hwm(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        shutil.rmtree(work, ignore_errors=True)
    return rows, {"answers_after": alive, "server_peak_mb": hwm}


def _vm_hwm(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="the avct package's parent folder to run")
    parser.add_argument("--no-server", action="store_true")
    parser.add_argument("--no-cli", action="store_true")
    parser.add_argument("--only", help="regular expression of the case ids to run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(args.src), os.environ.get("PYTHONPATH", "")])}
    root = Path(tempfile.mkdtemp(prefix="avct-hostile-"))
    cases = [c for c in write_all(all_cases(root), root).values() if not args.only or re.search(args.only, c.id)]
    results = []
    print("| case | what it is | command line | s | peak MB |")
    print("|---|---|---|---|---|")
    for case in [] if args.no_cli else cases:
        out = root / "out" / case.id.replace("/", "_")
        out.mkdir(parents=True)
        result = run_measured(cli_argv(case, root, out), env)
        result.update(id=case.id, what=case.what, outcome=outcome(result, case, out))
        results.append(result)
        print(f"| {case.id} | {case.what} | {result['outcome']} | {result['seconds']:.1f} | {result['peak_mb']:.0f} |",
              flush=True)
    server = None
    if not args.no_server:
        rows, summary = server_rows(cases, root, env)
        print("\n| case | server answer | s |\n|---|---|---|")
        for row in rows:
            answer = f"{row['status']} {row['detail']}" if row["detail"] else (
                f"{row['status']}, job {row['job']['status']}" + (f": {row['job']['error']}" if row["job"].get("error")
                                                                   else ""))
            print(f"| {row['id']} | {answer} | {row['seconds']:.2f} |")
        print(f"\nserver still answering: {summary['answers_after']}; server peak {summary['server_peak_mb']:.0f} MB")
        server = {"rows": rows, **summary}
    if args.json:
        args.json.write_text(json.dumps({"cli": results, "server": server}, indent=1, default=str))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
