"""Reading and planning an ``avct batch`` manifest: its rows, their paths, options and output names
(see :mod:`avct.batch` for the format). Nothing here runs a network."""
from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AvctError
from ..inference.options import GenerateOptions
from ..limits import LIMITS

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


# ---- the manifest ----------------------------------------------------------------------------------

def read_manifest(path: str | os.PathLike) -> list[dict[str, Any] | str]:
    """The rows of a CSV or JSONL manifest: a dict per row, or a one-line reason for a row that could
    not be read (a JSONL line that is no JSON object). AvctError when the file itself is unusable, or
    larger than :data:`avct.limits.LIMITS` allows (bytes before reading it, rows while reading)."""
    path = Path(path)
    if path.is_dir():
        raise AvctError(f"manifest is a folder, not a file: {path}")
    try:
        size = path.stat().st_size
        if size > LIMITS.max_manifest_bytes:
            raise AvctError(f"manifest {path} is {size / 2**20:.1f} MB; avct batch reads at most "
                            f"{LIMITS.max_manifest_bytes / 2**20:g} MB (split it)")
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AvctError(f"manifest not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise AvctError(f"cannot read manifest {path}: {e}") from None
    jsonl = path.suffix.lower() in JSONL_SUFFIXES or (path.suffix.lower() != ".csv" and text.lstrip().startswith("{"))
    try:
        rows = _jsonl_rows(text) if jsonl else _csv_rows(text, path)
    except csv.Error as e:  # e.g. a cell longer than the csv module's field limit
        raise AvctError(f"cannot read manifest {path}: {e}") from None
    except _TooManyRows:
        raise AvctError(f"manifest {path} has more than {LIMITS.max_manifest_rows} rows; split it (avct batch "
                        f"takes at most {LIMITS.max_manifest_rows})") from None
    if not rows:
        raise AvctError(f"manifest {path} has no rows")
    return rows


class _TooManyRows(Exception):
    """More data rows than LIMITS.max_manifest_rows (raised while reading, before planning)."""


def _count(rows: list) -> None:
    if len(rows) > LIMITS.max_manifest_rows:
        raise _TooManyRows


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
        except RecursionError:
            rows.append(f"line {number} is not valid JSON (nested too deeply)")
            continue
        rows.append(value if isinstance(value, dict) else f"line {number} is not a JSON object")
        _count(rows)
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
        _count(rows)
    return rows


# ---- planning ----------------------------------------------------------------------------------------

def plan_jobs(records: list[dict[str, Any] | str], manifest_dir: Path, out_dir: Path) -> list[Job]:
    """A Job per row, with paths resolved, options parsed and output names fixed for the whole
    manifest (explicit names first; derived names avoid them and each other)."""
    jobs = [_plan_row(number, record, manifest_dir) for number, record in enumerate(records, 1)]
    root = out_dir.resolve()
    taken: dict[str, int] = {}
    for job, record in zip(jobs, records):
        explicit = _cell(record, "output") if isinstance(record, dict) else ""
        if job.problem or not explicit:
            continue
        try:
            job.output = _inside(root, explicit)
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
    try:
        path = Path(value).expanduser()
    except RuntimeError:  # "~someone" who is no user here: the name as written
        path = Path(value)
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


def _inside(root: Path, name: str) -> str:
    """``name`` as a clean relative path inside the output folder ``root`` (resolved; posix form);
    AvctError if it would leave it or is no .mp4."""
    from ..video.writer import check_output_name

    if not name.isprintable():  # a NUL byte, a line break: no file name to write (and no one-line message)
        raise AvctError(f"output {name!r} holds characters a file name cannot")
    path = Path(name)
    if path.is_absolute() or ".." in path.parts:
        raise AvctError(f"output {name} must be a relative path inside the output folder (no '..', not absolute)")
    if not (root / path).resolve().is_relative_to(root):  # e.g. through a symlinked sub-folder
        raise AvctError(f"output {name} leads outside the output folder")
    check_output_name(name)
    return path.as_posix()
