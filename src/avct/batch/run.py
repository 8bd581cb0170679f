"""Running an ``avct batch`` manifest with one loaded pipeline: a process's share of the rows, one
row at a time, resumable, with the report rewritten after each row (see :mod:`avct.batch`)."""
from __future__ import annotations

import csv
import io
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import AvctError, AvctNotice
from ..io_utils import atomic_write_text, remove_stale_temporaries
from .manifest import Job, plan_jobs, read_manifest

REPORT_FIELDS = ("row", "image", "audio", "output", "status", "seconds", "reason")
# The report is rewritten after a row that made a video, else at most this often (and at the end), and
# never more than a tenth of the time: a manifest of 100 000 rows that fail at once must not rewrite a
# growing report 100 000 times.
REPORT_EVERY_S = 1.0


@dataclass
class RowResult:
    job: Job
    status: str                        # done | skipped | failed
    seconds: float = 0.0
    reason: str = ""

    def as_row(self) -> dict[str, Any]:
        return {"row": self.job.row, "image": self.job.image, "audio": self.job.audio, "output": self.job.output,
                "status": self.status, "seconds": f"{self.seconds:.2f}", "reason": self.reason}


@dataclass
class BatchReport:
    """What one process did; ``failed`` decides the exit status."""

    results: list[RowResult]
    report_path: Path

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> int:
        return self.count("failed")

    def summary(self) -> str:
        return (f"{len(self.results)} rows: {self.count('done')} done, {self.count('skipped')} skipped, "
                f"{self.failed} failed; report: {self.report_path}")


# ---- running ------------------------------------------------------------------------------------------

def process_share(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(rank, world size): the arguments, else the RANK / WORLD_SIZE variables a launcher such as
    torchrun sets, else (0, 1)."""
    try:
        rank = int(os.environ.get("RANK", 0)) if rank is None else int(rank)
        world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else int(world_size)
    except ValueError:
        raise AvctError(f"RANK and WORLD_SIZE must be whole numbers, got {os.environ.get('RANK')!r} "
                        f"and {os.environ.get('WORLD_SIZE')!r}") from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise AvctError(f"need 0 <= RANK < WORLD_SIZE, got RANK={rank}, WORLD_SIZE={world_size}")
    return rank, world_size


def report_name(rank: int, world_size: int) -> str:
    return "report.csv" if world_size == 1 else f"report.rank{rank}.csv"


def run_batch(manifest: str | os.PathLike, out_dir: str | os.PathLike, pipeline, *, rank: int | None = None,
              world_size: int | None = None, progress: bool = False) -> BatchReport:
    """Generate this process's share of the manifest's rows into ``out_dir`` with one loaded
    :class:`~avct.inference.pipeline.Pipeline`; returns (and writes) the report. See the module docstring."""
    from tqdm import tqdm

    rank, world_size = process_share(rank, world_size)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise AvctError(f"output folder {out_dir} is a file")
    jobs = plan_jobs(read_manifest(manifest), Path(manifest).resolve().parent, out_dir)
    mine = [job for job in jobs if (job.row - 1) % world_size == rank]
    out_dir.mkdir(parents=True, exist_ok=True)
    # a run killed mid-row left the hidden temporary file of that row's output (the output itself is atomic)
    remove_stale_temporaries(job.output_path for job in mine if job.output_path is not None)
    report = BatchReport([], out_dir / report_name(rank, world_size))
    show = progress and rank == 0
    with tqdm(total=len(mine), unit="video", desc="videos", disable=not show) as rows, \
            tqdm(unit="frame", desc="frames", position=1, leave=False, disable=not show) as frames:
        def frames_done(done: int, total: int) -> None:
            frames.total = total
            frames.n = done
            frames.refresh()

        written, writing = time.monotonic(), 0.0
        try:
            for job in mine:
                frames.reset()
                result = run_job(job, pipeline, frames_done)
                report.results.append(result)
                if result.status == "done" or time.monotonic() - written >= max(REPORT_EVERY_S, 10 * writing):
                    start = time.monotonic()
                    _write_report(report)
                    written = time.monotonic()
                    writing = written - start
                rows.update(1)
        finally:
            _write_report(report)
    return report


def run_job(job: Job, pipeline, progress: Callable[[int, int], None] | None = None) -> RowResult:
    """One row: skipped if its output exists, failed with a one-line reason, or done (with the notices
    it raised, e.g. which face was used, as its reason; they are also re-issued for the console)."""
    start = time.perf_counter()
    if job.problem:
        return RowResult(job, "failed", reason=job.problem)
    if job.output_path.exists():
        return RowResult(job, "skipped", reason="output exists")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AvctNotice)
        try:
            pipeline.generate(job.image_path, job.audio_path, job.output_path, options=job.options,
                              progress=progress or False)
            status, reason = "done", ""
        except AvctError as e:
            status, reason = "failed", str(e)
        except Exception as e:  # a bug on one row must not cost the others; the report says what it was
            status, reason = "failed", f"internal error: {type(e).__name__}: {' '.join(str(e).split())}"
    notes = [str(w.message) for w in caught if issubclass(w.category, AvctNotice)]
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if status == "done" and notes:
        reason = "; ".join(notes)
    return RowResult(job, status, time.perf_counter() - start, reason)


def _write_report(report: BatchReport) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(r.as_row() for r in report.results)
    atomic_write_text(report.report_path, buffer.getvalue())
