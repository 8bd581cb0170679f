"""``avct preprocess``: talking-head videos -> a training dataset (format: ``docs/dataset.md``).

Per clip, in this order (cheap checks first, so a bad clip costs little):

1. probe: no audio track / shorter than 1 s / unreadable -> skipped;
2. the audio track (16 kHz mono, exactly as ``avct generate`` decodes speech);
3. pass 1 over the video: every frame's timestamp, and face detection on a frame every
   ``SAMPLE_INTERVAL_S`` (at least ``MIN_SAMPLES`` per clip) -> one **fixed crop per clip** (the paper
   crops "as in FOMM ... without aligning speakers' noses across frames"): a robust union of the
   speaker's face boxes through the official crop maths (:func:`avct.face.crop.crop_box`);
4. pass 2: the video resampled to 25 fps by timestamps (for each 40 ms tick the nearest source frame,
   so variable frame rates and dropped frames are handled), cropped, resized to 256², streamed into
   ``frames.npy`` (constant memory for any clip length); 68 landmarks on every crop;
5. per-frame head pose (from the landmarks) and mouth box (for the D_sync crops), interpolated over
   frames where the face was lost; the 41-d features and the phonemes of the audio.

Each clip is written into a hidden temporary folder that is renamed into place only when complete
(with a ``DONE`` marker), and ``index.json`` is rewritten atomically after every clip, so an
interrupted run loses at most the clip in progress and a re-run skips finished clips. A bad clip is
reported with its reason and skipped; it never stops the run.

The speaker rule (which face a clip is about), applied to the sampled frames:

* a face must be found in at least half of them (else "no face");
* a frame is *ambiguous* when its second-largest face has at least half the area of the largest; if
  more than half of the frames with a face are ambiguous, the clip is skipped (ambiguous speaker);
* the speaker is the face nearest to the median position of the largest faces (and of similar size);
  it must be there in at least half of the sampled frames (else "the face does not stay in one
  place": a fixed crop cannot follow cuts between people or shots).

After pass 2 a clip is also skipped when the speaker's face is lost (not detected in the crop) in more than
a quarter of its frames; pass 2 stops as soon as that is certain. Clips with fewer lost frames are kept
(``lost_frames`` in the index, NaN landmarks) so that a short cut-away does not cost a whole clip.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shutil
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from ...errors import AvctError
from ...io_utils import atomic_folder, atomic_write_text
from ..dataset import FORMAT, SUPPORTED_VERSIONS, read_index
from ...media import FPS, IMAGE_SIZE, MOUTH_MARGIN, SAMPLES_PER_FRAME, SAMPLE_RATE, VIDEO_SUFFIXES

log = logging.getLogger(__name__)

FORMAT_VERSION = SUPPORTED_VERSIONS[-1]
# The 41-d features of the last frame need a full 25 ms analysis window: 15 ms of audio past the end of
# the video are kept so that 640 T + 240 samples give exactly 4 T feature rows and T phoneme ids.
AUDIO_TAIL = 240
MIN_SECONDS = 1.0

SAMPLE_INTERVAL_S = 1.0   # face detection on one source frame per second for the crop ...
MIN_SAMPLES = 8           # ... but on at least this many frames per clip
MIN_FACE_FRACTION = 0.5   # a face in at least this fraction of the sampled frames
COMPARABLE_AREA = 0.5     # a second face with >= this fraction of the largest's area makes a frame ambiguous
MAX_AMBIGUOUS_FRACTION = 0.5
MAX_CENTRE_SHIFT = 1.0    # speaker: centre within this many median face sides of the median centre ...
SIZE_RATIO = 2.0          # ... and size within this factor of the median size
UNION_PERCENTILE = 10     # robust union of the speaker's boxes: 10th/90th percentile of each edge
MAX_LOST_FRACTION = 0.25  # skip a clip whose face is lost in more than a quarter of its frames
TRACK_MARGIN = 0.25       # per frame, the face centre must lie in the crop's face region grown by this
MOUTH_POINTS = slice(48, 68)
FLUSH_FRAMES = 500        # frames.npy is flushed to disk every this many frames (~100 MB)

PHONEME_MODES = ("recognize", "none")


class _Skip(AvctError):
    """This clip cannot be used; the message is the reason shown in the report."""


# ---------------------------------------------------------------------------------------------------
# the report


@dataclass
class ClipOutcome:
    """What happened to one input video in this run."""

    source: str
    status: str  # "processed", "reused" or "skipped"
    name: str | None = None
    reason: str | None = None
    frames: int = 0
    usable_frames: int = 0
    lost_frames: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


@dataclass
class PreprocessReport:
    """The outcome of one ``preprocess`` run; ``summary()`` is what the CLI prints."""

    dataset: Path
    outcomes: list[ClipOutcome] = field(default_factory=list)
    seconds: float = 0.0

    def _with(self, status: str) -> list[ClipOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def processed(self) -> list[ClipOutcome]:
        return self._with("processed")

    @property
    def reused(self) -> list[ClipOutcome]:
        return self._with("reused")

    @property
    def skipped(self) -> list[ClipOutcome]:
        return self._with("skipped")

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": str(self.dataset), "seconds": round(self.seconds, 3),
                "processed": [_outcome_dict(o) for o in self.processed],
                "reused": [_outcome_dict(o) for o in self.reused],
                "skipped": [{"source": o.source, "reason": o.reason} for o in self.skipped]}

    def summary(self) -> str:
        """Human-readable: counts, then every skipped clip with its reason."""
        usable = sum(o.usable_frames for o in self.processed + self.reused)
        lines = [f"dataset {self.dataset}: {len(self.processed)} clip(s) processed, {len(self.reused)} reused, "
                 f"{len(self.skipped)} skipped; {usable} usable frames ({usable / FPS:.1f} s) from this run's "
                 f"inputs; took {self.seconds:.1f} s"]
        for o in self.processed + self.reused:
            lost = f", face lost in {o.lost_frames}" if o.lost_frames else ""
            lines.append(f"  {o.status:9s} {o.name}: {o.frames} frames, {o.usable_frames} usable{lost}")
            lines += [f"            warning: {w}" for w in o.warnings]
        for o in self.skipped:
            lines.append(f"  skipped   {o.source}: {o.reason}")
        return "\n".join(lines)


def _outcome_dict(o: ClipOutcome) -> dict[str, Any]:
    d = dataclasses.asdict(o)
    d.pop("status")
    d.pop("reason")
    d["seconds"] = round(o.seconds, 3)
    return d


# ---------------------------------------------------------------------------------------------------
# entry point


def preprocess(videos: Iterable[str | os.PathLike], out: str | os.PathLike, *,
               transcripts: dict[str, str] | None = None, phonemes: str = "recognize",
               max_seconds: float | None = None, speaker: str | None = None,
               audio_delay: float = 0.0, progress: bool = True) -> PreprocessReport:
    """Turn talking-head videos (files or folders of them) into the dataset at ``out``.

    ``transcripts`` maps a video's stem (or its path) to what is said, for forced alignment;
    ``phonemes="none"`` fills the phoneme track with SIL (fast; for tests and pose-only data);
    ``max_seconds`` keeps only the start of every clip; ``speaker`` is stored in the index.
    ``audio_delay`` (seconds) re-syncs sources whose audio track runs late (> 0) or early (< 0) against
    the picture: the audio of frame i is taken from ``t0 + i/25 + audio_delay`` (silence where that is
    outside the track). Lip-sync training needs it for badly muxed clips.
    Raises AvctError only for problems with ``out`` itself; bad clips are skipped and reported.
    """
    if phonemes not in PHONEME_MODES:
        raise AvctError(f"phonemes must be one of {', '.join(PHONEME_MODES)}, got {phonemes!r}")
    if max_seconds is not None and not max_seconds >= MIN_SECONDS:
        raise AvctError(f"--max-seconds must be at least {MIN_SECONDS:g}, got {max_seconds}")
    started = time.perf_counter()
    root = Path(out)
    report = PreprocessReport(dataset=root)
    inputs, missing = collect_videos(videos)
    report.outcomes += missing
    with _DatasetLock(root):
        index = _Index.load(root)
        _remove_stale_temporaries(root / "clips")
        bar = _progress(len(inputs), progress)
        try:
            for path in inputs:
                bar.set_postfix_str(path.name[-40:], refresh=False)
                outcome = _preprocess_one(path, root, index, transcripts=transcripts, phonemes=phonemes,
                                          max_seconds=max_seconds, speaker=speaker, audio_delay=audio_delay,
                                          progress=progress)
                report.outcomes.append(outcome)
                index.record(outcome, speaker)
                index.save()
                if outcome.status == "skipped" and progress:
                    bar.write(f"skipped {path}: {outcome.reason}")
                bar.update(1)
        finally:
            bar.close()
            report.seconds = time.perf_counter() - started
            for o in missing:
                index.record(o, speaker)
            index.save()
            delay = {"audio_delay": audio_delay} if audio_delay else {}  # as in _settings: only when set
            _write_report(root, report, phonemes=phonemes, max_seconds=max_seconds, **delay)
    return report


def collect_videos(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[ClipOutcome]]:
    """Video files from files and folders (folders searched recursively, sorted); missing paths and
    folders without videos are reported as skipped instead of stopping the run."""
    found: list[Path] = []
    bad: list[ClipOutcome] = []
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not files:
                bad.append(ClipOutcome(str(p), "skipped", reason="folder holds no video files"))
        elif p.is_file():
            files = [p]
        else:
            bad.append(ClipOutcome(str(p), "skipped", reason="file not found"))
            files = []
        for f in files:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                found.append(f)
    return found, bad


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="clip", desc="preprocess", disable=not enabled, dynamic_ncols=True)


# ---------------------------------------------------------------------------------------------------
# one clip


def _preprocess_one(path: Path, root: Path, index: _Index, *, transcripts: dict[str, str] | None,
                    phonemes: str, max_seconds: float | None, speaker: str | None,
                    audio_delay: float, progress: bool) -> ClipOutcome:
    """Process, reuse or skip one video; never raises except for KeyboardInterrupt / SystemExit."""
    started = time.perf_counter()
    source = str(path)
    try:
        transcript = _transcript_for(path, transcripts)
        settings = _settings(max_seconds, phonemes, transcript, audio_delay)
        signature = source_signature(path)
        name = index.name_for(path)
        clip_dir = root / "clips" / name
        meta = finished_meta(clip_dir)
        if meta is not None and meta.get("source") == signature and meta.get("settings") == settings:
            return ClipOutcome(source, "reused", name=name, frames=meta["frames"],
                               usable_frames=meta["usable_frames"], lost_frames=meta.get("lost_frames", 0),
                               seconds=time.perf_counter() - started)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            meta = _build_clip(path, clip_dir, transcript=transcript, phonemes=phonemes,
                               max_seconds=max_seconds, audio_delay=audio_delay, progress=progress,
                               extra={"name": name, "source": signature, "settings": settings,
                                      "speaker": speaker})
        notes = _unique(" ".join(str(w.message).split()) for w in caught if issubclass(w.category, UserWarning))
        return ClipOutcome(source, "processed", name=name, frames=meta["frames"],
                           usable_frames=meta["usable_frames"], lost_frames=meta["lost_frames"],
                           seconds=time.perf_counter() - started, warnings=notes)
    except AvctError as e:
        reason = str(e)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # a bug or an exotic file must not stop a long run: report it, go on
        log.debug("preprocessing %s failed", path, exc_info=True)
        reason = f"unexpected error ({type(e).__name__}: {e})"
    return ClipOutcome(source, "skipped", reason=" ".join(reason.split()), seconds=time.perf_counter() - started)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _transcript_for(path: Path, transcripts: dict[str, str] | None) -> str | None:
    if not transcripts:
        return None
    for key in (str(path), str(path.resolve()), path.name, path.stem):
        if key in transcripts:
            return transcripts[key]
    return None


def _settings(max_seconds: float | None, phonemes: str, transcript: str | None,
              audio_delay: float = 0.0) -> dict[str, Any]:
    """Everything besides the source file that changes a clip's arrays: a change means redo."""
    digest = hashlib.sha1(transcript.encode("utf-8")).hexdigest() if transcript is not None else None
    settings = {"format_version": FORMAT_VERSION, "max_seconds": max_seconds, "phonemes": phonemes,
                "transcript_sha1": digest}
    if audio_delay:  # only when set, so that datasets written before the option are still reused
        settings["audio_delay"] = audio_delay
    return settings


def source_signature(path: Path) -> dict[str, Any]:
    """Identifies the exact source file: a re-run reuses a clip only if none of this changed."""
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def finished_meta(clip_dir: Path) -> dict[str, Any] | None:
    """The clip's meta.json if the clip is complete (DONE marker present), else None."""
    if not (clip_dir / "DONE").is_file():
        return None
    try:
        return json.loads((clip_dir / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _build_clip(path: Path, clip_dir: Path, *, transcript: str | None, phonemes: str,
                max_seconds: float | None, progress: bool, extra: dict[str, Any],
                audio_delay: float = 0.0) -> dict[str, Any]:
    """All arrays of one clip, written into a temporary folder that replaces ``clip_dir`` when complete."""
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    info, audio = _probe_and_audio(path)
    timings["audio_decode"] = time.perf_counter() - tick
    tick = time.perf_counter()
    scan = scan_video(path, max_seconds=max_seconds, expected_seconds=info.video_duration or info.duration)
    ticks = scan.tick_sources(max_seconds)
    if len(ticks) < MIN_SECONDS * FPS:
        raise _Skip(f"too short ({len(ticks) / FPS:.2f} s of video; at least {MIN_SECONDS:g} s needed)")
    choice = choose_crop(scan.detections, scan.height, scan.width)
    timings["scan"] = time.perf_counter() - tick

    with _clip_folder(clip_dir) as tmp:
        tick = time.perf_counter()
        landmarks = write_frames(path, tmp / "frames.npy", ticks, choice, progress=progress)
        lost = int(np.isnan(landmarks[:, 0, 0]).sum())
        if lost > MAX_LOST_FRACTION * len(ticks):
            raise _lost(lost, len(ticks))
        poses, boxes = poses_and_mouth_boxes(landmarks)
        np.save(tmp / "landmarks.npy", landmarks.astype(np.float32))
        np.save(tmp / "poses.npy", poses.astype(np.float32))
        np.save(tmp / "mouth_boxes.npy", boxes.astype(np.int32))
        timings["frames_landmarks_poses"] = time.perf_counter() - tick

        tick = time.perf_counter()
        start_sample = int(round((scan.start + audio_delay) * SAMPLE_RATE))
        samples = audio_span(audio.samples, start_sample, len(ticks) * SAMPLES_PER_FRAME + AUDIO_TAIL)
        audio_meta = write_audio_tracks(tmp, samples, transcript=transcript, phonemes=phonemes)
        timings["features_phonemes"] = time.perf_counter() - tick

        usable = min(len(ticks), audio_meta["feature_rows"] // 4, audio_meta["phoneme_frames"])
        meta = {**extra, "frames": len(ticks), "usable_frames": usable, "lost_frames": lost,
                **audio_meta, "start_seconds": round(scan.start, 6),
                "source_video": {"width": scan.width, "height": scan.height, "fps": info.fps,
                                 "codec": info.codec, "frames_read": len(scan.times),
                                 "audio_sample_rate": audio.source_rate, "audio_channels": audio.source_channels},
                "crop_box": list(choice.crop_box), "face_box": [round(v, 2) for v in choice.face_box],
                "face_detection": choice.stats, "timings": {k: round(v, 3) for k, v in timings.items()},
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write_text(tmp / "meta.json", json.dumps(meta, indent=1))
    return meta


def audio_span(samples: np.ndarray, start: int, length: int) -> np.ndarray:
    """``samples[start:start + length]`` where ``start`` may be negative (leading silence); shorter only
    when the track ends first."""
    lead = min(max(-start, 0), length)
    body = samples[max(start, 0): max(start, 0) + length - lead]
    return np.concatenate([np.zeros(lead, dtype=samples.dtype), body]) if lead else body


def _probe_and_audio(path: Path):
    """The cheap checks (audio track, length), then the audio: a bad clip fails before any video work."""
    from ...audio.decode import load_audio
    from ...video.reader import probe_video

    info = probe_video(path)
    if not info.has_audio:
        raise _Skip("no audio track")
    seconds = max(info.duration, info.video_duration)
    if seconds < MIN_SECONDS:
        raise _Skip(f"too short ({seconds:.2f} s; at least {MIN_SECONDS:g} s needed)")
    return info, load_audio(path)


@contextlib.contextmanager
def _clip_folder(clip_dir: Path) -> Iterator[Path]:
    """A hidden temporary folder beside ``clip_dir``; on success DONE is written into it and it replaces
    ``clip_dir``; on any exception (Ctrl-C included) it is removed."""
    with atomic_folder(clip_dir, suffix=".tmp") as tmp:
        yield tmp
        (tmp / "DONE").write_bytes(b"")


def _remove_stale_temporaries(clips: Path) -> None:
    """Hidden ``.NAME.*.tmp`` folders are clips a crashed run was writing (we hold the lock)."""
    if clips.is_dir():
        for p in clips.iterdir():
            if p.name.startswith(".") and p.name.endswith(".tmp") and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# pass 1: timestamps and face boxes


@dataclass
class Detection:
    """The faces of one sampled source frame: boxes (x0, y0, x1, y1), largest first."""

    time: float
    boxes: list[tuple[float, float, float, float]]


@dataclass
class VideoScan:
    """Pass 1: every frame's time (seconds from the file's start, monotonic) and the sampled faces."""

    times: np.ndarray
    detections: list[Detection]
    width: int
    height: int

    @property
    def start(self) -> float:
        """Time of the first video frame: tick 0 (and audio sample 0 of the clip) is placed there, so a
        video stream that starts late does not begin with frozen frames."""
        return max(0.0, float(self.times[0]))

    def tick_sources(self, max_seconds: float | None = None) -> np.ndarray:
        """For each 25 fps tick, the index of the source frame nearest in time.

        Ticks run from the first frame to the end of the last one (its time + the typical frame
        duration), at most ``max_seconds`` long.
        """
        times = self.times
        step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0 / FPS
        end = times[-1] + max(step, 1e-3)
        count = max(0, math.ceil((end - self.start) * FPS - 1e-6))
        if max_seconds is not None:
            count = min(count, int(math.floor(max_seconds * FPS + 1e-6)))
        t = self.start + np.arange(count) / FPS
        right = np.clip(np.searchsorted(times, t), 0, len(times) - 1)
        left = np.clip(right - 1, 0, len(times) - 1)
        return np.where(np.abs(times[left] - t) <= np.abs(times[right] - t), left, right).astype(np.int64)


def _open_video(path: Path):
    """(container, stream, converter): the file's first video stream with read_video's RGB conversion."""
    import av

    from ...video.pyav import sws_flags
    from ...video.reader import open_input

    container = open_input(path)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    reformatter = av.video.reformatter.VideoReformatter()
    flags = sws_flags()

    def to_rgb(frame) -> np.ndarray:
        return reformatter.reformat(frame, format="rgb24", interpolation=flags).to_ndarray()

    return container, stream, to_rgb


def _decoded(container, stream, path: Path) -> Iterator[tuple[Any, float]]:
    """(frame, time in seconds from the file's start); missing or non-increasing timestamps are
    replaced by the previous one + one nominal frame, so times are strictly increasing."""
    import av

    origin = container.start_time / 1_000_000 if container.start_time is not None else 0.0
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    nominal = 1.0 / float(rate) if rate else 1.0 / FPS
    previous: float | None = None
    try:
        for frame in container.decode(stream):
            t = frame.time
            t = (previous + nominal) if t is None else t - origin
            if previous is not None and t <= previous:
                t = previous + nominal
            previous = t
            yield frame, t
    except av.FFmpegError as e:
        raise AvctError(f"cannot decode video {path}: {' '.join(str(e).split())}") from None


def scan_video(path: Path, *, max_seconds: float | None, expected_seconds: float | None) -> VideoScan:
    """Pass 1: decode every frame (converting only the sampled ones) and detect faces on the samples."""
    from ...face.landmarks import detect_faces

    span = min(x for x in (expected_seconds, max_seconds, math.inf) if x)  # expected length to be sampled
    interval = min(SAMPLE_INTERVAL_S, span / MIN_SAMPLES) if math.isfinite(span) else SAMPLE_INTERVAL_S
    container, stream, to_rgb = _open_video(path)
    times: list[float] = []
    detections: list[Detection] = []
    width = height = 0
    next_sample: float | None = None
    with container:
        for frame, t in _decoded(container, stream, path):
            if next_sample is None:
                next_sample = t
                width, height = frame.width, frame.height
            if max_seconds is not None and times and t > times[0] + max_seconds + 0.5:
                break  # past the kept span (plus a margin for the nearest-frame choice)
            times.append(t)
            if t >= next_sample - 1e-6 and (max_seconds is None or t < times[0] + max_seconds):
                faces = detect_faces(to_rgb(frame))
                detections.append(Detection(t, [f.box for f in faces]))
                next_sample += interval * max(1, math.floor((t - next_sample) / interval) + 1)
    if not times:
        raise _Skip("the video stream holds no decodable frames")
    return VideoScan(np.asarray(times, dtype=np.float64), detections, width, height)


# ---------------------------------------------------------------------------------------------------
# the fixed crop


@dataclass(frozen=True)
class CropChoice:
    """The clip's crop: ``crop_box`` in source pixels (right/bottom exclusive) and the face region
    ``face_box`` (robust union of the speaker's boxes) it was computed from."""

    crop_box: tuple[int, int, int, int]
    face_box: tuple[float, float, float, float]
    stats: dict[str, int]


def _centre(box) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _side(box) -> float:
    return math.sqrt(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0))


def choose_crop(detections: list[Detection], height: int, width: int) -> CropChoice:
    """Apply the speaker rule (module docstring) and the official crop maths once for the whole clip."""
    from ...face.crop import crop_box

    n = len(detections)
    with_face = [d for d in detections if d.boxes]
    if not with_face:
        raise _Skip(f"no face found (checked {n} frames)")
    if len(with_face) < MIN_FACE_FRACTION * n:
        raise _Skip(f"no face in most frames (a face in {len(with_face)} of {n} checked frames)")
    ambiguous = sum(1 for d in with_face if len(d.boxes) > 1 and
                    _side(d.boxes[1]) ** 2 >= COMPARABLE_AREA * _side(d.boxes[0]) ** 2)
    if ambiguous > MAX_AMBIGUOUS_FRACTION * len(with_face):
        raise _Skip(f"several faces of comparable size in {ambiguous} of {len(with_face)} frames with a face "
                    "(ambiguous speaker)")
    anchor = np.median([_centre(d.boxes[0]) for d in with_face], axis=0)
    size = float(np.median([_side(d.boxes[0]) for d in with_face]))
    speaker = []
    for d in with_face:
        near = [b for b in d.boxes if np.linalg.norm(_centre(b) - anchor) <= MAX_CENTRE_SHIFT * size
                and size / SIZE_RATIO <= _side(b) <= size * SIZE_RATIO]
        if near:
            speaker.append(min(near, key=lambda b: np.linalg.norm(_centre(b) - anchor)))
    if len(speaker) < MIN_FACE_FRACTION * n:
        raise _Skip(f"the face does not stay in one place (the same face in only {len(speaker)} of {n} "
                    "checked frames); a fixed crop cannot follow it")
    boxes = np.asarray(speaker, dtype=np.float64)
    face_box = (float(np.percentile(boxes[:, 0], UNION_PERCENTILE)),
                float(np.percentile(boxes[:, 1], UNION_PERCENTILE)),
                float(np.percentile(boxes[:, 2], 100 - UNION_PERCENTILE)),
                float(np.percentile(boxes[:, 3], 100 - UNION_PERCENTILE)))
    box = crop_box(face_box, height, width)
    if box[2] - box[0] < 16 or box[3] - box[1] < 16:
        raise _Skip(f"the face region {tuple(round(v) for v in face_box)} gives an unusable crop {box}")
    stats = {"checked_frames": n, "frames_with_face": len(with_face), "ambiguous_frames": ambiguous,
             "speaker_frames": len(speaker)}
    return CropChoice(tuple(int(v) for v in box), face_box, stats)


# ---------------------------------------------------------------------------------------------------
# pass 2: frames and landmarks


def speaker_crops(path: Path, ticks: np.ndarray,
                  choice: CropChoice) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Pass 2 as a stream: for each source frame that some 25 fps ticks use, in decoding order,
    ``(those ticks' indices, the 256² crop, the speaker's (68, 2) landmarks in it or NaN)``."""
    count = len(ticks)
    order = np.argsort(ticks, kind="stable")  # tick indices grouped by source frame
    last_needed = int(ticks[order[-1]])
    region = _face_region_in_crop(choice)
    container, stream, to_rgb = _open_video(path)
    pos = 0
    with container:
        for j, (frame, _) in enumerate(_decoded(container, stream, path)):
            if pos < count and ticks[order[pos]] == j:
                end = pos
                while end < count and ticks[order[end]] == j:
                    end += 1
                crop = _crop(to_rgb(frame), choice.crop_box)
                yield order[pos:end], crop, _speaker_landmarks(crop, region)
                pos = end
            if j >= last_needed:
                break
    if pos < count:
        raise AvctError(f"cannot decode video {path}: the second pass ended after {pos} of {count} frames")


def write_frames(path: Path, target: Path, ticks: np.ndarray, choice: CropChoice, *,
                 progress: bool = False) -> np.ndarray:
    """Stream the 25 fps crops into ``target`` (.npy, memory-mapped); returns (T, 68, 2) landmarks
    in the 256² crop (NaN where the speaker's face was not found)."""
    from numpy.lib.format import open_memmap
    from tqdm import tqdm

    count = len(ticks)
    frames = open_memmap(target, mode="w+", dtype=np.uint8, shape=(count, IMAGE_SIZE, IMAGE_SIZE, 3))
    landmarks = np.full((count, 68, 2), np.nan, dtype=np.float64)
    done = lost = 0
    bar = tqdm(total=count, unit="frame", desc=path.stem[:30], leave=False, disable=not progress)
    crops = speaker_crops(path, ticks, choice)
    try:
        for indices, crop, points in crops:
            frames[indices] = crop
            landmarks[indices] = points
            lost += len(indices) * int(np.isnan(points[0, 0]))
            if (done + len(indices)) // FLUSH_FRAMES > done // FLUSH_FRAMES:
                frames.flush()  # written pages become clean: long clips do not pile up dirty RAM
            done += len(indices)
            bar.update(len(indices))
            if lost > MAX_LOST_FRACTION * count:  # no need to crop the rest: the clip is skipped
                raise _lost(lost, count, early=True)
        frames.flush()
    finally:
        crops.close()  # closes the video when the clip is given up early
        bar.close()
        del frames
    return landmarks


def _lost(lost: int, count: int, early: bool = False) -> _Skip:
    """The skip reason of a clip whose speaker is missing from most of its crops."""
    amount = f"at least {lost}" if early else str(lost)
    return _Skip(f"the face is lost in {amount} of {count} frames (more than {MAX_LOST_FRACTION:.0%}) "
                 "of the fixed crop")


def _crop(rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Cut the fixed box and resize to 256²: INTER_AREA when shrinking (no aliasing in the training
    targets), bilinear when enlarging (as the official reference crop)."""
    left, top, right, bottom = box
    patch = rgb[top:bottom, left:right]
    shrink = patch.shape[0] > IMAGE_SIZE or patch.shape[1] > IMAGE_SIZE
    return cv2.resize(patch, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _to_crop(points: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Source pixels -> 256² crop pixels (pixel-centre convention, as crop_reference)."""
    left, top, right, bottom = box
    scale = np.array([IMAGE_SIZE / (right - left), IMAGE_SIZE / (bottom - top)])
    return (np.asarray(points, dtype=np.float64) - np.array([left, top]) + 0.5) * scale - 0.5


def _face_region_in_crop(choice: CropChoice) -> tuple[float, float, float, float]:
    """Where the speaker's face centre may be in the crop: the face region grown by TRACK_MARGIN."""
    (x0, y0), (x1, y1) = _to_crop(np.array(choice.face_box).reshape(2, 2), choice.crop_box)
    mx, my = TRACK_MARGIN * (x1 - x0), TRACK_MARGIN * (y1 - y0)
    return x0 - mx, y0 - my, x1 + mx, y1 + my


def _speaker_landmarks(crop: np.ndarray, region: tuple[float, float, float, float]) -> np.ndarray:
    """68 landmarks of the largest face whose centre lies in ``region``; NaN if there is none (another
    person walking through the crop is not the speaker).

    dlib's detector and predictor directly, not ``detect_faces``: in a 256² crop the speaker's face is
    ~100+ px, so its upsampled second attempt (4x the cost, on every frame without a face) cannot help,
    and only the chosen face needs landmarks.
    """
    from ...face.landmarks import _models

    detector, predictor = _models()
    x0, y0, x1, y1 = region
    rects = sorted(detector(crop, 0), key=lambda r: r.width() * r.height(), reverse=True)
    for r in rects:
        cx, cy = (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2
        if x0 <= cx <= x1 and y0 <= cy <= y1:
            shape = predictor(crop, r)
            return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
    return np.full((68, 2), np.nan)


# ---------------------------------------------------------------------------------------------------
# poses and mouth boxes


def fill_gaps(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Linear interpolation over the frames where ``ok`` is False (ends hold the nearest value)."""
    values = np.asarray(values, dtype=np.float64)
    flat = values.reshape(len(values), -1).copy()
    good = np.flatnonzero(ok)
    bad = np.flatnonzero(~np.asarray(ok))
    if good.size and bad.size:
        for c in range(flat.shape[1]):
            flat[bad, c] = np.interp(bad, good, flat[good, c])
    return flat.reshape(values.shape)


def mouth_box(points: np.ndarray) -> np.ndarray:
    """Square (x0, y0, x1, y1) around the 20 mouth landmarks, grown by MOUTH_MARGIN on each side and
    shifted (not cut) to stay inside the 256² image; right/bottom exclusive."""
    mouth = points[MOUTH_POINTS]
    lo, hi = mouth.min(axis=0), mouth.max(axis=0)
    side = min(float(IMAGE_SIZE), max(8.0, (1 + 2 * MOUTH_MARGIN) * float(max(hi - lo))))
    side = int(round(side))
    centre = (lo + hi) / 2 + 0.5  # pixel-centre coordinates -> edge coordinates
    x0, y0 = (int(round(c - side / 2)) for c in centre)
    x0 = min(max(x0, 0), IMAGE_SIZE - side)
    y0 = min(max(y0, 0), IMAGE_SIZE - side)
    return np.array([x0, y0, x0 + side, y0 + side], dtype=np.int64)


def poses_and_mouth_boxes(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 6) head poses and (T, 4) mouth boxes; frames without a face (or without a pose fit) get
    values interpolated from their neighbours."""
    from ...face.head_pose import estimate_head_pose

    count = len(landmarks)
    found = ~np.isnan(landmarks[:, 0, 0])
    poses = np.zeros((count, 6))
    boxes = np.zeros((count, 4))
    posed = found.copy()
    for i in np.flatnonzero(found):
        boxes[i] = mouth_box(landmarks[i])
        try:
            poses[i] = estimate_head_pose(landmarks[i])
        except AvctError:
            posed[i] = False
    if not posed.any():
        raise _Skip("no head pose could be estimated on any frame")
    boxes = np.rint(fill_gaps(boxes, found)).astype(np.int64)
    return fill_gaps(poses, posed), boxes


# ---------------------------------------------------------------------------------------------------
# audio, features, phonemes


def write_audio_tracks(folder: Path, samples: np.ndarray, *, transcript: str | None,
                       phonemes: str) -> dict[str, Any]:
    """audio.npy, features.npy, phonemes.json, phoneme_ids.npy; returns their sizes for meta.json."""
    from ...audio.features import acoustic_features
    from ...audio.phonemes import Phone, Word, frame_phoneme_ids, write_phoneme_json

    if len(samples) < MIN_SECONDS * SAMPLE_RATE:
        raise _Skip(f"the audio track covers only {len(samples) / SAMPLE_RATE:.2f} s of the video "
                    f"(at least {MIN_SECONDS:g} s needed)")
    if np.ptp(samples) == 0:
        raise _Skip("the audio track is silent (all samples equal)")
    np.save(folder / "audio.npy", samples.astype(np.float32))
    features = acoustic_features(samples).astype(np.float32)
    np.save(folder / "features.npy", features)
    end_cs = len(samples) // (SAMPLE_RATE // 100)
    if phonemes == "none":
        words, how = [Word("sil", (Phone("SIL", 0, end_cs),))], "none"
    else:
        from ...audio.recognize import recognize_phonemes

        words = recognize_phonemes(samples, transcript=transcript)
        how = "aligned" if transcript is not None else "recognized"
    write_phoneme_json(words, folder / "phonemes.json")
    ids = np.asarray(frame_phoneme_ids(words), dtype=np.int64)
    np.save(folder / "phoneme_ids.npy", ids)
    return {"audio_samples": int(len(samples)), "feature_rows": int(len(features)), "phoneme_frames": int(len(ids)),
            "phonemes": how}


# ---------------------------------------------------------------------------------------------------
# the index, the report, the lock


class _Index:
    """index.json: finished clips (by name) and skipped sources; rewritten atomically after every clip."""

    def __init__(self, root: Path, clips: dict[str, dict[str, Any]], skipped: dict[str, str]) -> None:
        self.root = root
        self.clips = clips
        self.skipped = skipped  # source -> reason
        self._names: dict[str, str] = {}  # resolved source path -> name used in this run

    @classmethod
    def load(cls, root: Path) -> _Index:
        """The existing index (entries whose clip is still complete), or an empty one."""
        path = root / "index.json"
        if not path.exists():
            return cls(root, {}, {})
        data = read_index(path)
        try:
            clips = {c["name"]: c for c in data.get("clips", [])
                     if (root / "clips" / str(c["name"]) / "DONE").is_file()}
            skipped = {s["source"]: s["reason"] for s in data.get("skipped", [])}
        except (KeyError, TypeError, AttributeError):
            raise AvctError(f"{path} is damaged (malformed clip or skipped entries); fix or delete it") from None
        return cls(root, clips, skipped)

    def name_for(self, path: Path) -> str:
        """The clip folder name: the sanitised file stem, plus a hash of the path when another source
        already uses that name (two ``clip.mp4`` in different folders)."""
        key = str(path.resolve())
        if key in self._names:
            return self._names[key]
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem).strip("._") or "clip"
        name = base
        owner = self._owner(name)
        if (owner is not None and owner != key) or name in self._names.values():
            name = f"{base}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
        self._names[key] = name
        return name

    def _owner(self, name: str) -> str | None:
        """The resolved source path of an existing clip folder or index entry called ``name``."""
        entry = self.clips.get(name)
        if entry is not None:
            return entry.get("source_resolved") or str(Path(entry["source"]).resolve())
        meta_path = self.root / "clips" / name / "meta.json"
        try:
            return json.loads(meta_path.read_text(encoding="utf-8"))["source"]["path"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def record(self, outcome: ClipOutcome, speaker: str | None) -> None:
        if outcome.status == "skipped":
            self.skipped[outcome.source] = outcome.reason or "unknown reason"
            return
        self.skipped.pop(outcome.source, None)
        previous = self.clips.pop(outcome.name, {})
        self.clips[outcome.name] = {
            "name": outcome.name, "frames": outcome.frames, "usable_frames": outcome.usable_frames,
            "lost_frames": outcome.lost_frames,
            "speaker": speaker if speaker is not None else previous.get("speaker"),
            "source": outcome.source, "source_resolved": str(Path(outcome.source).resolve())}

    def save(self) -> None:
        data = {"format": FORMAT, "version": FORMAT_VERSION, "fps": FPS, "sample_rate": SAMPLE_RATE,
                "image_size": IMAGE_SIZE, "clips": list(self.clips.values()),
                "skipped": [{"source": s, "reason": r} for s, r in self.skipped.items()]}
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.root / "index.json", json.dumps(data, indent=1))


def _write_report(root: Path, report: PreprocessReport, **settings: Any) -> None:
    data = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": settings, **report.to_dict()}
    atomic_write_text(root / "report.json", json.dumps(data, indent=1))


class _DatasetLock:
    """One ``avct preprocess`` per dataset at a time (a second would fight over the same temp folders);
    a lock left by a crashed run (dead pid on this host) is taken over."""

    def __init__(self, root: Path) -> None:
        self.path = root / ".preprocess.lock"

    def __enter__(self) -> _DatasetLock:
        root = self.path.parent
        if root.exists() and not root.is_dir():
            raise AvctError(f"--out {root} exists and is not a folder")
        root.mkdir(parents=True, exist_ok=True)
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._holder_alive():
                    raise AvctError(f"another avct preprocess is writing to {root} "
                                    f"({self.path.read_text(errors='replace').strip()}); wait for it or "
                                    f"delete {self.path} if it is gone") from None
                self.path.unlink(missing_ok=True)
                continue
            except OSError as e:
                raise AvctError(f"cannot write to the dataset folder {root}: {e.strerror or e}") from None
            with os.fdopen(fd, "w") as f:
                f.write(me + "\n")
            return self
        raise AvctError(f"cannot lock the dataset folder {root} ({self.path})")

    def _holder_alive(self) -> bool:
        try:
            host, pid = self.path.read_text().split()
            if host != socket.gethostname():
                return True  # cannot tell: be safe
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        except (OSError, ValueError):
            return False
        return True

    def __exit__(self, *exc: Any) -> None:
        self.path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------
# transcripts of the inputs


def read_transcripts(folder: str | os.PathLike | None, videos: list[Path]) -> dict[str, str] | None:
    """``<stem>.txt`` of every video that has one; an unreadable transcript is an error (one line)."""
    if folder is None:
        return None
    folder = Path(folder)
    if not folder.is_dir():
        raise AvctError(f"transcript folder not found: {folder}")
    found = {}
    for video in videos:
        path = folder / f"{video.stem}.txt"
        if path.is_file():
            try:
                found[str(video)] = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise AvctError(f"cannot read transcript {path}: {e}") from None
    return found
