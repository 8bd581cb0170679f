"""`avct batch` / `avct.batch.run_batch`: real videos from a CSV manifest with good and bad rows, resumed
runs, JSONL, output paths kept inside the folder, and the rank split of several processes."""
from __future__ import annotations

import csv
import json
import wave
from pathlib import Path

import numpy as np
import pytest

from avct.batch import plan_jobs, read_manifest, run_batch
from avct.cli import main
from avct.errors import AvctError
from avct.io_utils import atomic_write_bytes
from avct.inference.options import GenerateOptions

from support.shared_files import IMAGES, require

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "examples" / "astronaut.png"
SPEECH = ROOT / "examples" / "speech_librivox_austen_7s.wav"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A folder with the example photo and 1 s of the example speech, for manifests to point into."""
    from avct.audio.decode import load_audio

    folder = tmp_path_factory.mktemp("inputs")
    (folder / "face.png").write_bytes(IMAGE.read_bytes())
    audio = load_audio(SPEECH)
    pcm = (np.clip(audio.samples[: audio.sample_rate], -1, 1) * 32767).astype(np.int16)
    with wave.open(str(folder / "hello.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(audio.sample_rate)
        w.writeframes(pcm.tobytes())
    return folder


@pytest.fixture(scope="module")
def pipeline():
    from avct.inference.pipeline import Pipeline

    return Pipeline.load()


class RecordingPipeline:
    """Stands in for the networks where only the batch logic is under test: records each call and
    writes a placeholder file atomically, as the real one does."""

    def __init__(self) -> None:
        self.calls: list[tuple[Path, Path, Path, GenerateOptions]] = []

    def generate(self, image, audio, output, *, options, progress):
        if not Path(image).is_file():
            raise AvctError(f"image not found: {image}")
        self.calls.append((Path(image), Path(audio), Path(output), options))
        atomic_write_bytes(output, b"video")
        return Path(output)


def _report(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    names = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_csv_manifest_good_and_bad_rows_then_resume(inputs, pipeline, data, tmp_path, capsys):
    from avct.video.reader import probe_video

    manifest = _write_csv(inputs / "jobs.csv", [
        {"image": "face.png", "audio": "hello.wav"},                                        # name derived
        {"image": str(require(IMAGES / "two_people_facerec.jpg")), "audio": "hello.wav",
         "output": "people/right.mp4", "face": "1", "still": "true"},
        {"image": "face.png", "audio": str(data / "audio" / "edge_bad_fmtchunk.wav")},     # corrupt audio
        {"image": "missing.png", "audio": "hello.wav", "output": "missing.mp4"},
    ])
    out = tmp_path / "out"
    report = run_batch(manifest, out, pipeline)
    rows = _report(out / "report.csv")
    assert [r["status"] for r in rows] == ["done", "done", "failed", "failed"] and report.failed == 2
    assert [r["output"] for r in rows[:2]] == ["face__hello.mp4", "people/right.mp4"]
    assert rows[0]["reason"] == "" and rows[1]["reason"] == ""  # --face 1 chosen: no "several faces" note
    assert "edge_bad_fmtchunk.wav" in rows[2]["reason"] and rows[3]["reason"].startswith("image not found")
    assert all("\n" not in r["reason"] and float(r["seconds"]) >= 0 for r in rows)
    for name in ("face__hello.mp4", "people/right.mp4"):
        info = probe_video(out / name)
        assert info.codec == "h264" and info.has_audio and 23 <= info.frame_count <= 25
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["face__hello.mp4", "report.csv", "right.mp4"]

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")}
    capsys.readouterr()
    assert main(["batch", str(manifest), "-o", str(out), "-q"]) == 1  # failed rows: non-zero exit
    assert capsys.readouterr().out.strip() == f"4 rows: 0 done, 2 skipped, 2 failed; report: {out / 'report.csv'}"
    assert [r["status"] for r in _report(out / "report.csv")] == ["skipped", "skipped", "failed", "failed"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")} == before


def test_jsonl_manifest_paths_options_and_transcript_file(inputs, tmp_path):
    (inputs / "words.txt").write_text("it is a truth", encoding="utf-8")
    manifest = inputs / "jobs.jsonl"
    lines = [
        {"image": "face.png", "audio": "hello.wav", "still": True, "mouth_scale": 0.5, "transcript": "words.txt"},
        {"image": "face.png", "audio": "hello.wav", "pose-scale": "2", "pose_from": "clip.mp4", "output": "b/x.mp4"},
        "not an object",
        {"image": "face.png", "audio": "hello.wav", "pose_scale": "fast"},
    ]
    manifest.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n{broken\n", encoding="utf-8")
    fake = RecordingPipeline()
    report = run_batch(manifest, tmp_path / "out", fake)
    rows = _report(tmp_path / "out" / "report.csv")
    assert [r["status"] for r in rows] == ["done", "done", "failed", "failed", "failed"]
    assert rows[2]["reason"] == "line 3 is not a JSON object" and rows[3]["reason"].startswith("pose_scale must be")
    assert rows[4]["reason"].startswith("line 6 is not valid JSON")
    (image, audio, output, options), second = fake.calls
    assert (image, audio, output) == (inputs / "face.png", inputs / "hello.wav", tmp_path / "out" / "face__hello.mp4")
    assert options == GenerateOptions(still=True, mouth_scale=0.5, transcript="it is a truth")
    assert second[2] == tmp_path / "out" / "b" / "x.mp4"
    assert second[3] == GenerateOptions(pose_scale=2.0, pose_from=str(inputs / "clip.mp4"))
    assert report.failed == 3


def test_outputs_stay_inside_the_folder_and_names_are_unique(inputs, tmp_path):
    out = tmp_path / "out"
    (tmp_path / "elsewhere").mkdir()
    out.mkdir()
    (out / "link").symlink_to(tmp_path / "elsewhere")
    rows = [{"image": "face.png", "audio": "hello.wav", "output": name}
            for name in ("../x.mp4", str(tmp_path / "abs.mp4"), "a/../../x.mp4", "link/x.mp4", "x.avi",
                         "same.mp4", "same.mp4")]
    rows += [{"image": "face.png", "audio": "hello.wav"}] * 2 + [{"image": "sub/face.png", "audio": "hello.wav"}]
    manifest = _write_csv(inputs / "paths.csv", rows)
    jobs = plan_jobs(read_manifest(manifest), inputs, out)
    problems = [j.problem for j in jobs]
    assert all("relative path inside the output folder" in p for p in problems[:3])
    assert problems[3] == "output link/x.mp4 leads outside the output folder"
    assert problems[4] == "output must be an .mp4 file, got x.avi"
    assert problems[5] is None and problems[6] == "output same.mp4 is also row 6's output"
    assert [j.output for j in jobs[7:]] == ["face__hello.mp4", "face__hello-2.mp4", "face__hello-3.mp4"]
    report = run_batch(manifest, out, RecordingPipeline())
    assert report.count("done") == 3  # the first same.mp4 and two derived names (sub/face.png does not exist)
    assert not list(tmp_path.glob("*.mp4")) and not list((tmp_path / "elsewhere").iterdir())


def test_processes_split_the_rows_by_rank(inputs, tmp_path, monkeypatch):
    manifest = _write_csv(tmp_path / "m.csv", [{"image": str(inputs / "face.png"), "audio": str(inputs / "hello.wav"),
                                                "output": f"v{i}.mp4"} for i in range(1, 8)])
    done = {}
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "3")
        fake = RecordingPipeline()
        report = run_batch(manifest, tmp_path / "out", fake)
        assert report.report_path == tmp_path / "out" / f"report.rank{rank}.csv"
        done[rank] = [r["row"] for r in _report(report.report_path)]
        assert [c[2].name for c in fake.calls] == [f"v{r}.mp4" for r in done[rank]]
    assert done == {0: ["1", "4", "7"], 1: ["2", "5"], 2: ["3", "6"]}
    assert not (tmp_path / "out" / "report.csv").exists()
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(AvctError, match="0 <= RANK < WORLD_SIZE"):
        run_batch(manifest, tmp_path / "out", RecordingPipeline())


@pytest.mark.parametrize("content,message", [
    ("photo,sound\na.png,b.wav\n", "needs the columns image and audio"),
    ("image,audio\n", "has no rows"),
])
def test_unusable_manifest_is_one_line(content, message, tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    manifest.write_text(content, encoding="utf-8")
    assert main(["batch", str(manifest), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("avct: error: manifest") and message in err and "\n" not in err
    assert main(["batch", str(tmp_path), "-o", str(tmp_path / "out")]) == 1
    assert "manifest is a folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_process_under_torchrun_exits_0_with_failed_rows(tmp_path, monkeypatch, capsys):
    """torchrun stops every process when one exits non-zero, so a process of several reports its failed
    rows and exits 0; alone, the same failure is exit status 1."""
    manifest = _write_csv(tmp_path / "m.csv", [{"image": "missing.png", "audio": "x.wav"}] * 2)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["batch", str(manifest), "-o", str(tmp_path / "out"), "-q"]) == 0
    assert "avct: note: process 1 exits 0 although rows failed" in capsys.readouterr().err
    assert [r["row"] for r in _report(tmp_path / "out" / "report.rank1.csv")] == ["2"]
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert main(["batch", str(manifest), "-o", str(tmp_path / "out"), "-q"]) == 1
