"""``avct batch``: many videos from one manifest, with the models loaded once.

The manifest is CSV (a header row) or JSONL (one JSON object per line), one video per row:

* ``image``, ``audio`` (required): paths, relative to the manifest's folder unless absolute;
* ``output`` (optional): a file name or relative path inside the output folder (``..`` and absolute
  paths are refused); without it ``<image stem>__<audio stem>.mp4``, numbered ``-2``, ``-3``, ... when
  several rows would get the same name;
* any :class:`~avct.inference.options.GenerateOptions` name as a column (``transcript``, ``still``,
  ``pose_scale``, ...), parsed by ``GenerateOptions.from_mapping`` (empty cells mean the default);
  ``phonemes``, ``pose_from`` and a transcript *file* are paths relative to the manifest too.

Resumable: a row whose output exists is skipped (outputs are written atomically, so a present file is
complete). A row that fails is recorded with a one-line reason and the run goes on. Every row ends up
in the report (``report.csv``: row, image, audio, output, status done|skipped|failed, seconds, reason),
rewritten after each row.

Several processes: under ``torchrun --nproc_per_node N -m avct batch ...`` (or any launcher that sets
``RANK`` and ``WORLD_SIZE``) process ``RANK`` takes the rows ``i % WORLD_SIZE == RANK`` (``i`` counting
data rows from 0) and writes its own ``report.rank{RANK}.csv``; no process group is needed. Output
names are planned over the whole manifest, so every process (and every rerun) agrees on them. (The CLI
exits 0 in that case even when rows failed: torchrun stops all processes when one exits non-zero.)
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import AvctError, AvctNotice
from ..io_utils import atomic_write_text
from .options import GenerateOptions

REPORT_FIELDS = ("row", "image", "audio", "output", "status", "seconds", "reason")
PATH_OPTIONS = ("phonemes", "pose_from")  # option columns that hold paths (relative to the manifest)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Job:
    """One manifest row, planned: where its files are, and why it cannot run (``problem``) if so."""

    row: int                           # 1-based data row number (the header does not count)
    image: str = ""                    # as written in the manifest (for the report)
    audio: str = ""
    output: str = ""                   # relative to the output folder
    image_path: Path | None = None
    audio_path: Path | None = None
    output_path: Path | None = None
    options: GenerateOptions | None = None
    problem: str | None = None


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


# ---- the manifest ----------------------------------------------------------------------------------

def read_manifest(path: str | os.PathLike) -> list[dict[str, Any] | str]:
    """The rows of a CSV or JSONL manifest: a dict per row, or a one-line reason for a row that could
    not be read (a JSONL line that is no JSON object). AvctError when the file itself is unusable."""
    path = Path(path)
    if path.is_dir():
        raise AvctError(f"manifest is a folder, not a file: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AvctError(f"manifest not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise AvctError(f"cannot read manifest {path}: {e}") from None
    jsonl = path.suffix.lower() in JSONL_SUFFIXES or (path.suffix.lower() != ".csv" and text.lstrip().startswith("{"))
    rows = _jsonl_rows(text) if jsonl else _csv_rows(text, path)
    if not rows:
        raise AvctError(f"manifest {path} has no rows")
    return rows


def _jsonl_rows(text: str) -> list[dict[str, Any] | str]:
    rows: list[dict[str, Any] | str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            rows.append(f"line {number} is not valid JSON ({e.msg})")
            continue
        rows.append(value if isinstance(value, dict) else f"line {number} is not a JSON object")
    return rows


def _csv_rows(text: str, path: Path) -> list[dict[str, Any] | str]:
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in ("image", "audio") if name not in header]
    if missing:
        raise AvctError(f"manifest {path} needs the columns image and audio in its header row "
                        f"(missing: {', '.join(missing)}; found: {', '.join(header) or 'nothing'})")
    reader.fieldnames = header
    rows: list[dict[str, Any] | str] = []
    for record in reader:
        if None in record:  # more cells than header names
            rows.append(f"line {reader.line_num} has more cells than the header")
        elif any(v is not None and v.strip() for v in record.values()):
            rows.append(record)
    return rows


# ---- planning ----------------------------------------------------------------------------------------

def plan_jobs(records: list[dict[str, Any] | str], manifest_dir: Path, out_dir: Path) -> list[Job]:
    """A Job per row, with paths resolved, options parsed and output names fixed for the whole
    manifest (explicit names first; derived names avoid them and each other)."""
    jobs = [_plan_row(number, record, manifest_dir) for number, record in enumerate(records, 1)]
    taken: dict[str, int] = {}
    for job, record in zip(jobs, records):
        explicit = _cell(record, "output") if isinstance(record, dict) else ""
        if job.problem or not explicit:
            continue
        try:
            job.output = _inside(out_dir, explicit)
        except AvctError as e:
            job.problem = str(e)
            continue
        key = job.output.lower()
        if key in taken:
            job.problem = f"output {job.output} is also row {taken[key]}'s output"
        else:
            taken[key] = job.row
    for job in jobs:
        if job.problem or job.output:
            continue
        stem = _UNSAFE_NAME.sub("_", f"{Path(job.image).stem}__{Path(job.audio).stem}").strip("._") or "video"
        name, n = f"{stem}.mp4", 1
        while name.lower() in taken:
            n += 1
            name = f"{stem}-{n}.mp4"
        job.output, taken[name.lower()] = name, job.row
    for job in jobs:
        if job.output and not job.problem:
            job.output_path = out_dir / job.output
    return jobs


def _cell(record: dict[str, Any], name: str) -> str:
    value = record.get(name)
    return "" if value is None else str(value).strip()


def _resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _plan_row(number: int, record: dict[str, Any] | str, base: Path) -> Job:
    if isinstance(record, str):
        return Job(number, problem=record)
    job = Job(number, image=_cell(record, "image"), audio=_cell(record, "audio"))
    if not job.image or not job.audio:
        job.problem = f"the row needs both an image and an audio (got image={job.image!r}, audio={job.audio!r})"
        return job
    job.image_path, job.audio_path = _resolve(job.image, base), _resolve(job.audio, base)
    values = {k: v for k, v in record.items() if k not in ("image", "audio", "output")}
    for name in PATH_OPTIONS:
        if isinstance(values.get(name), str) and values[name].strip():
            values[name] = str(_resolve(values[name].strip(), base))
    try:
        values["transcript"] = _transcript(values.get("transcript"), base)
        job.options = GenerateOptions.from_mapping(values)
    except AvctError as e:
        job.problem = str(e)
    return job


def _transcript(value: Any, base: Path) -> str | None:
    """A transcript cell: the text, or a .txt file (relative to the manifest) holding it."""
    from ..audio.transcript import looks_like_transcript_file, read_transcript

    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    return read_transcript(str(_resolve(value, base)) if looks_like_transcript_file(value) else value)


def _inside(out_dir: Path, name: str) -> str:
    """``name`` as a clean relative path inside ``out_dir`` (posix form); AvctError if it would leave it
    or is no .mp4."""
    from ..video.writer import check_output_name

    path = Path(name)
    if path.is_absolute() or ".." in path.parts:
        raise AvctError(f"output {name} must be a relative path inside the output folder (no '..', not absolute)")
    root = out_dir.resolve()
    if not (root / path).resolve().is_relative_to(root):  # e.g. through a symlinked sub-folder
        raise AvctError(f"output {name} leads outside the output folder")
    check_output_name(name)
    return path.as_posix()


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
    report = BatchReport([], out_dir / report_name(rank, world_size))
    show = progress and rank == 0
    with tqdm(total=len(mine), unit="video", desc="videos", disable=not show) as rows, \
            tqdm(unit="frame", desc="frames", position=1, leave=False, disable=not show) as frames:
        def frames_done(done: int, total: int) -> None:
            frames.total = total
            frames.n = done
            frames.refresh()

        for job in mine:
            frames.reset()
            report.results.append(run_job(job, pipeline, frames_done))
            _write_report(report)
            rows.update(1)
    if not mine:
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
