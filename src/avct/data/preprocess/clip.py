"""One clip: reuse it if its source and settings are unchanged, else build all its arrays in a temporary
folder that replaces the clip's folder when complete; a bad clip is reported, never raised."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from ...errors import AvctError
from ...io_utils import atomic_folder, atomic_write_text
from ...media import FPS, SAMPLES_PER_FRAME, SAMPLE_RATE
from .audio import AUDIO_TAIL, audio_span, write_audio_tracks
from .crop import choose_crop
from .frames import MAX_LOST_FRACTION, lost_face, write_frames
from .index import FORMAT_VERSION, DatasetIndex
from .poses import poses_and_mouth_boxes
from .report import ClipOutcome, MIN_SECONDS, Skip
from .scan import scan_video

log = logging.getLogger(__name__)


def preprocess_one(path: Path, root: Path, index: DatasetIndex, *, transcripts: dict[str, str] | None,
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
        raise Skip(f"too short ({len(ticks) / FPS:.2f} s of video; at least {MIN_SECONDS:g} s needed)")
    choice = choose_crop(scan.detections, scan.height, scan.width)
    timings["scan"] = time.perf_counter() - tick

    with _clip_folder(clip_dir) as tmp:
        tick = time.perf_counter()
        landmarks = write_frames(path, tmp / "frames.npy", ticks, choice, progress=progress)
        lost = int(np.isnan(landmarks[:, 0, 0]).sum())
        if lost > MAX_LOST_FRACTION * len(ticks):
            raise lost_face(lost, len(ticks))
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


def _probe_and_audio(path: Path):
    """The cheap checks (audio track, length), then the audio: a bad clip fails before any video work."""
    from ...audio.decode import load_audio
    from ...video.reader import probe_video

    info = probe_video(path)
    if not info.has_audio:
        raise Skip("no audio track")
    seconds = max(info.duration, info.video_duration)
    if seconds < MIN_SECONDS:
        raise Skip(f"too short ({seconds:.2f} s; at least {MIN_SECONDS:g} s needed)")
    return info, load_audio(path)


@contextlib.contextmanager
def _clip_folder(clip_dir: Path) -> Iterator[Path]:
    """A hidden temporary folder beside ``clip_dir``; on success DONE is written into it and it replaces
    ``clip_dir``; on any exception (Ctrl-C included) it is removed."""
    with atomic_folder(clip_dir, suffix=".tmp") as tmp:
        yield tmp
        (tmp / "DONE").write_bytes(b"")


def remove_stale_temporaries(clips: Path) -> None:
    """Hidden ``.NAME.*.tmp`` folders are clips a crashed run was writing (we hold the lock)."""
    if clips.is_dir():
        for p in clips.iterdir():
            if p.name.startswith(".") and p.name.endswith(".tmp") and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
