"""Hostile ``avct batch`` manifests: refused whole with one line before any model loads, or read and run row by
row (a stand-in writes the videos: the rows' planning, outputs and report are under test), nothing written
outside the output folder, 100 000 rows in bounded time."""
from __future__ import annotations

import csv
import re
import time
from pathlib import Path

import pytest

from avct.batch import run_batch
from avct.cli import main

from support.hostile_corpus import case_ids, one_error_line
from support.stand_in import StandInPipeline


def _report(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("case_id", case_ids("manifest", refused=True))
def test_refused_manifest(case_id, corpus, capsys, tmp_path):
    case = corpus[case_id]
    out = tmp_path / "out"
    start = time.perf_counter()
    assert main(["batch", str(case.path), "-o", str(out), "-q"]) == 1
    assert re.match(case.message(), one_error_line(capsys))
    assert time.perf_counter() - start < 30  # refused while reading, before a model loads
    assert not out.exists()


def test_outputs_that_leave_the_folder_fail_their_row_only(corpus, tmp_path):
    case = corpus["manifest/escape.csv"]
    out = tmp_path / "work" / "out"
    report = run_batch(case.path, out, StandInPipeline())
    rows = _report(report.report_path)
    assert [r["status"] for r in rows] == ["failed", "failed", "failed", "done"]
    assert all(r["reason"].endswith("must be a relative path inside the output folder (no '..', not absolute)")
               for r in rows[:3])
    assert _files(tmp_path) == ["work/out/ok.mp4", "work/out/report.csv"]
    assert not Path("/tmp/avct-abs.mp4").exists()


def test_duplicate_outputs_run_once(corpus, tmp_path):
    report = run_batch(corpus["manifest/duplicates.csv"].path, tmp_path, StandInPipeline())
    rows = _report(report.report_path)
    assert [(r["status"], r["reason"]) for r in rows] == [
        ("done", ""), ("failed", "output same.mp4 is also row 1's output"),
        ("failed", "output SAME.mp4 is also row 1's output")]  # one file on a case-insensitive disk too
    assert _files(tmp_path) == ["report.csv", "same.mp4"]


@pytest.mark.parametrize("name", ["crlf", "bom"])
def test_crlf_and_byte_order_mark_are_plain_csv(name, corpus, good_inputs, tmp_path):
    report = run_batch(corpus[f"manifest/{name}.csv"].path, tmp_path, StandInPipeline())
    (row,) = _report(report.report_path)
    assert (row["image"], row["audio"], row["output"], row["status"]) == (str(good_inputs[0]), str(good_inputs[1]),
                                                                          f"{name}.mp4", "done")
    assert _files(tmp_path) == [f"{name}.mp4", "report.csv"]


def test_nested_json_is_one_failed_row(corpus, tmp_path):
    report = run_batch(corpus["manifest/nested.jsonl"].path, tmp_path, StandInPipeline())
    assert [(r["status"], r["reason"]) for r in _report(report.report_path)] == [
        ("failed", "line 1 is not valid JSON (nested too deeply)")]


def test_100000_rows_in_bounded_time_and_writes(corpus, tmp_path, monkeypatch):
    """Every row fails at once (no file exists): the report is written a few times, not 100 000 (it was
    rewritten after every row, ~200 GB of writes for this manifest)."""
    from avct.batch import run as batch_run

    writes = []
    real_write = batch_run._write_report
    monkeypatch.setattr(batch_run, "_write_report", lambda report: writes.append(len(report.results))
                        or real_write(report))
    start = time.perf_counter()
    report = run_batch(corpus["manifest/rows_100000.csv"].path, tmp_path, StandInPipeline())
    seconds = time.perf_counter() - start
    rows = _report(report.report_path)
    assert len(rows) == 100_000 and report.failed == 100_000
    assert rows[-1]["row"] == "100000" and rows[-1]["reason"].startswith("image not found: ")
    assert writes[-1] == 100_000 and len(writes) <= seconds / batch_run.REPORT_EVERY_S + 2
    assert seconds < 120
