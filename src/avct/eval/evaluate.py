"""``avct evaluate``: the paper's Table-1 metrics (FID, CPBD, LMD, AVOff, AVConf) as one command, plus the
lip-motion statistics of :mod:`.lips` (lip r, amplitude ratio, silence gap), the face-sharpness ratio,
the blinks of :mod:`.eyes` (per minute, deepest closure) and the head motion of :mod:`.head_motion`
(the nose tip's spread against the real speaker's).

Generated and reference videos are paired by file name (stem). Each video is decoded once for FID
features, CPBD and landmarks (and face boxes); a second decode cuts the SyncNet face crops when SyncNet
weights are given. Without weights, AVOff/AVConf are reported as null — never estimated.

Aggregation, as in the papers: FID over the pooled frames of all generated vs all reference videos;
CPBD and LMD averaged over all evaluated frames; AVOff/AVConf/LSE-D averaged over videos. The lip
statistics and the sharpness ratio are computed per video on the LMD frames (every ``--every``-th
generated frame and the reference frame shown at its time, so their curves come from the landmarks LMD
already found) and averaged over videos; so are the head-motion ratio and, with ``--every 1`` (a blink
lasts a few frames), the blinks. The "Ground Truth" row scores the reference videos themselves
(FID and LMD 0, lip r, amplitude, sharpness and head-motion ratio 1, silence gap 0 by definition; its
own blinks).
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..errors import AvctError
from . import report
from .cpbd import cpbd_rgb
from .eyes import EyeStats, eye_statistics
from .fid import FeatureStats, InceptionFeatures, fid_from_features
from .head_motion import head_spread, spread_ratio
from ..face.landmark_groups import aperture_curve
from .lips import (FrameMeasures, LipStats, face_sharpness, lip_statistics, sharpness_ratio,
                   silent_frames, timing_peak)
from .lmd import pair_indices, video_lmd
from ..models.syncnet import SyncNetV2
from .syncnet import SyncEmbedder, SyncResult, load_embedder, score_sync
from .tracking import build_track, crop_face, to_crop
from ..media import FPS, VIDEO_SUFFIXES, video_files

__all__ = ["evaluate", "videos_by_name", "pair_videos"]

MIN_SYNC_SECONDS = 4.0


# ---- inputs ------------------------------------------------------------------------------------


def videos_by_name(spec: str | os.PathLike | Sequence[str | os.PathLike], what: str) -> dict[str, Path]:
    """Directories (their video files, not recursive) and/or files -> {stem: path}."""
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    found: dict[str, Path] = {}
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths = video_files(p)
        elif p.is_file():
            paths = [p]
        else:
            raise AvctError(f"{what} video or directory not found: {p}")
        for q in paths:
            if q.stem in found and found[q.stem] != q:
                raise AvctError(f"two {what} videos are named {q.stem!r} ({found[q.stem]} and {q}); "
                                "videos are paired by name, so names must be unique")
            found[q.stem] = q
    if not found:
        raise AvctError(f"no {what} videos found in {', '.join(str(i) for i in items)} "
                        f"(looked for {', '.join(sorted(VIDEO_SUFFIXES))})")
    return found


def _names(names: Iterable[str], limit: int = 8) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def pair_videos(generated: dict[str, Path], reference: dict[str, Path]) -> list[tuple[str, Path, Path]]:
    """Pairs by stem; any video without a partner is an error that names them all."""
    only_gen = set(generated) - set(reference)
    only_ref = set(reference) - set(generated)
    if only_gen or only_ref:
        parts = []
        if only_gen:
            parts.append(f"no reference video for {_names(only_gen)}")
        if only_ref:
            parts.append(f"no generated video for {_names(only_ref)}")
        raise AvctError("videos are paired by file name, but " + "; ".join(parts))
    return [(name, generated[name], reference[name]) for name in sorted(generated)]


# ---- one video ---------------------------------------------------------------------------------


@dataclass
class VideoAnalysis:
    """Everything measured on one video (generated or reference)."""

    path: Path
    fps: float
    has_audio: bool = False
    frames: int = 0
    features: np.ndarray = field(default_factory=lambda: np.zeros((0, 2048)))
    cpbd: list[tuple[int, float]] = field(default_factory=list)
    landmarks: dict[int, np.ndarray | None] = field(default_factory=dict)
    boxes: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)
    face_landmarks: dict[int, np.ndarray] = field(default_factory=dict)  # where boxes were detected
    sharpness: dict[int, float] = field(default_factory=dict)  # face-box Laplacian variance, LMD frames
    sync: SyncResult | None = None
    sync_note: str | None = None

    @property
    def cpbd_mean(self) -> float | None:
        return float(np.mean([v for _, v in self.cpbd])) if self.cpbd else None


def _sync_index(n_frames: int, fps: float) -> np.ndarray:
    """Source frame shown at each 25 fps instant (nearest, as ffmpeg's fps filter)."""
    if not fps or abs(fps - FPS) < 1e-3:
        return np.arange(n_frames)
    n_out = int(math.floor(n_frames * FPS / fps))
    return np.minimum(np.floor(np.arange(n_out) * fps / FPS + 0.5).astype(int), n_frames - 1)


@dataclass
class _Context:
    extractor: InceptionFeatures
    embedder: SyncEmbedder | None
    frame_step: int
    detect_every: int
    tick: Callable[[int], None]


def _analyse(path: Path, ctx: _Context, lmd_frames: Callable[[int], bool]) -> VideoAnalysis:
    from ..face.landmarks import detect_faces
    from ..video.reader import probe_video, read_video

    info = probe_video(path)
    result = VideoAnalysis(path=path, fps=info.fps, has_audio=info.has_audio)
    want_boxes = ctx.embedder is not None
    batch: list[np.ndarray] = []
    feats: list[np.ndarray] = []
    i = -1
    for i, frame in enumerate(read_video(path)):
        if i % ctx.frame_step == 0:
            batch.append(frame)
            result.cpbd.append((i, cpbd_rgb(frame)))
            if len(batch) >= ctx.extractor.batch_size:
                feats.append(ctx.extractor(batch))
                batch = []
        need_lm = lmd_frames(i)
        if need_lm or (want_boxes and i % ctx.detect_every == 0):
            faces = detect_faces(frame)
            if need_lm:
                result.landmarks[i] = faces[0].landmarks if faces else None
                if faces:
                    result.sharpness[i] = face_sharpness(frame, faces[0].box)
            if faces and want_boxes:
                result.boxes[i] = faces[0].box
                result.face_landmarks[i] = faces[0].landmarks
        ctx.tick(1)
    if batch:
        feats.append(ctx.extractor(batch))
    result.frames = i + 1
    if result.frames == 0:
        raise AvctError(f"video {path} has no decodable frames")
    if feats:
        result.features = np.concatenate(feats)
    if ctx.embedder is not None:
        _sync(result, ctx, info.has_audio)
    return result


def _sync(result: VideoAnalysis, ctx: _Context, has_audio: bool) -> None:
    """Second decode: reference SyncNet crops at 25 fps, then the offset/confidence search."""
    from ..audio.decode import load_audio
    from ..video.reader import read_video

    if not has_audio:
        result.sync_note = "no audio track"
        return
    track = build_track(result.boxes, result.frames, landmarks=result.face_landmarks)
    if track is None:
        result.sync_note = "no face found"
        return
    try:
        samples = load_audio(result.path).samples
    except AvctError as e:
        result.sync_note = f"audio unusable ({e})"
        return
    index = _sync_index(result.frames, result.fps)
    crops = np.empty((len(index), 224, 224, 3), dtype=np.uint8)
    mouths = np.zeros((len(index), 4)) if track.mouth is not None else None
    wanted: dict[int, list[int]] = {}
    for j, src in enumerate(index):
        wanted.setdefault(int(src), []).append(j)
    for i, frame in enumerate(read_video(result.path)):
        if i >= result.frames:
            break
        for j in wanted.get(i, ()):
            crops[j] = crop_face(frame, track.x[i], track.y[i], track.s[i])
            if mouths is not None:
                mouths[j] = to_crop(track.mouth[i], track.x[i], track.y[i], track.s[i])
        ctx.tick(1)
    result.sync = score_sync(crops, samples, ctx.embedder, mouths=mouths)
    if result.sync is None:
        result.sync_note = "too short for SyncNet (needs > 5 frames of video and audio)"
    elif len(index) / FPS < MIN_SYNC_SECONDS:
        result.sync_note = f"shorter than {MIN_SYNC_SECONDS:.0f} s: SyncNet scores are noisy"


def _lip_scores(gen: VideoAnalysis, ref: VideoAnalysis,
                frame_pairs: list[tuple[int, int]]) -> tuple[LipStats, float | None, dict[str, Any]]:
    """Lip statistics, sharpness ratio and the aperture curves (for the plot) of one video pair.

    Silence comes from the reference's audio track (the generated one's when the reference has none),
    at the generated frame times."""
    from ..audio.decode import load_audio

    gen_curve = aperture_curve([gen.landmarks.get(i) for i, _ in frame_pairs])
    real_curve = aperture_curve([ref.landmarks.get(j) for _, j in frame_pairs])
    silent = None
    for a in (ref, gen):
        if a.has_audio and frame_pairs:
            try:
                audio = load_audio(a.path)
            except AvctError:
                continue
            silent = silent_frames(audio.samples, audio.sample_rate, gen.frames, gen.fps)[[i for i, _ in frame_pairs]]
            break
    stats = lip_statistics(gen_curve, real_curve, silent)
    sharp = sharpness_ratio([gen.sharpness.get(i, math.nan) for i, _ in frame_pairs],
                            [ref.sharpness.get(j, math.nan) for _, j in frame_pairs])
    series = {"frames": [i for i, _ in frame_pairs], "generated": gen_curve, "real": real_curve}
    return stats, sharp, series


def _measured(a: VideoAnalysis) -> list[np.ndarray | None]:
    """The landmarks of the frames measured on ``a``, in time order."""
    return [a.landmarks[i] for i in sorted(a.landmarks)]


def _eyes(a: VideoAnalysis) -> EyeStats:
    """Blinks of a video over the frames measured on it (evenly spaced over its duration)."""
    return eye_statistics(_measured(a), a.frames / a.fps if a.fps else 0.0)


def _lip_timing(gen: VideoAnalysis, ref: VideoAnalysis) -> tuple[int | None, float | None]:
    """The lag (generated frames, −3…+3) at which lip r peaks and r there (:func:`.lips.timing_peak`):
    a peak away from 0 says the generated mouth, or the reference's own picture, runs early or late.
    Reference frames that were not measured (another frame rate) leave their pairs out."""
    def measures(a: VideoAnalysis) -> FrameMeasures:
        return FrameMeasures(aperture_curve([a.landmarks.get(i) for i in range(a.frames)]),
                             np.full(a.frames, math.nan), a.fps)

    return timing_peak(measures(gen), measures(ref))


# ---- the whole evaluation ----------------------------------------------------------------------


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def evaluate(generated: str | os.PathLike | Sequence[str | os.PathLike],
             reference: str | os.PathLike | Sequence[str | os.PathLike],
             out_dir: str | os.PathLike, syncnet: str | os.PathLike | SyncEmbedder | None = None,
             progress: bool = True, *, frame_step: int = 1, detect_every: int = 1, batch_size: int = 16,
             device: str | None = "cpu") -> dict[str, Any]:
    """Score generated videos against their references; write CSV/JSON/MD/PNG into ``out_dir``.

    ``frame_step``: FID, CPBD and LMD on every N-th frame (1 = all frames, the paper's setting).
    ``detect_every``: face detection for the SyncNet crops every N frames (boxes interpolated between).
    ``syncnet``: a syncnet_v2 state-dict file, a D_sync directory, or any :class:`SyncEmbedder`;
    None skips AVOff/AVConf (null). Returns the summary (also written as ``summary.json``).
    """
    from ..inference.devices import resolve_device
    from ..video.reader import probe_video

    if frame_step < 1 or detect_every < 1 or batch_size < 1:
        raise AvctError("--every, --detect-every and --batch-size must be at least 1")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise AvctError(f"output {out} exists and is not a directory")
    pairs = pair_videos(videos_by_name(generated, "generated"), videos_by_name(reference, "reference"))
    dev = resolve_device(device)

    notes: list[str] = []
    embedder: SyncEmbedder | None
    syncnet_name: str | None = None
    if syncnet is None:
        embedder = None
        notes.append("AVOff/AVConf not computed: no SyncNet weights given (pass --syncnet with a "
                     "syncnet_v2.model state dict or a D_sync directory from `avct train syncnet`).")
    elif isinstance(syncnet, (str, os.PathLike)):
        embedder = load_embedder(syncnet, device=dev)
        syncnet_name = str(syncnet)
    else:
        embedder = syncnet
        syncnet_name = type(syncnet).__name__
    if embedder is not None and not isinstance(embedder, SyncNetV2):
        notes.append(f"AVOff/AVConf from {type(embedder).__name__}, not syncnet_v2: distances and confidences "
                     "are on that network's own scale, not comparable with published SyncNet numbers.")

    infos = {}
    for name, g, r in pairs:
        infos[name] = (probe_video(g), probe_video(r))
    passes = 2 if embedder is not None else 1
    total = sum((gi.frame_count + ri.frame_count) * passes for gi, ri in infos.values())

    from tqdm import tqdm

    bar = tqdm(total=total, unit="frame", desc="evaluate", disable=not progress, file=sys.stderr,
               dynamic_ncols=True, leave=True)
    ctx = _Context(extractor=InceptionFeatures(batch_size=batch_size, device=dev), embedder=embedder,
                   frame_step=frame_step, detect_every=detect_every, tick=bar.update)

    gen_stats, ref_stats = FeatureStats(), FeatureStats()
    rows: list[dict[str, Any]] = []
    plots: list[dict[str, Any]] = []
    all_cpbd: list[float] = []
    all_cpbd_ref: list[float] = []
    all_lmd: list[float] = []
    sync_clips = lip_pairs = silent_pairs = 0
    try:
        for name, gpath, rpath in pairs:
            gi, ri = infos[name]
            bar.set_postfix_str(name[:40])
            # Reference frames shown at the generated frames we measure (same index at equal rates).
            ref_needed = {j for i, j in pair_indices(gi.frame_count + 50, gi.fps, ri.frame_count + 50, ri.fps)
                          if i % frame_step == 0}
            gen = _analyse(gpath, ctx, lambda i: i % frame_step == 0)
            ref = _analyse(rpath, ctx, lambda j: j in ref_needed)
            frame_pairs = [(i, j) for i, j in pair_indices(gen.frames, gen.fps, ref.frames, ref.fps)
                           if i % frame_step == 0]
            lmd_pairs = [(i, j) for i, j in frame_pairs
                         if gen.landmarks.get(i) is not None and ref.landmarks.get(j) is not None]
            lmd_values = video_lmd(gen.landmarks, ref.landmarks, lmd_pairs)
            lips, sharpness, aperture_series = _lip_scores(gen, ref, frame_pairs)
            # on every frame only: with --every N the frames a lag pairs were not measured
            best_lag, r_best_lag = _lip_timing(gen, ref) if frame_step == 1 else (None, None)
            no_eyes = EyeStats(0, None, None)
            gen_eyes, ref_eyes = (_eyes(gen), _eyes(ref)) if frame_step == 1 else (no_eyes, no_eyes)
            head_motion = spread_ratio(head_spread(_measured(gen)), head_spread(_measured(ref)))
            lip_pairs += lips.pairs
            silent_pairs += lips.silent_pairs
            gen_stats.add(gen.features)
            ref_stats.add(ref.features)
            all_cpbd += [v for _, v in gen.cpbd]
            all_cpbd_ref += [v for _, v in ref.cpbd]
            all_lmd += lmd_values
            sync_clips += gen.sync.frames if gen.sync else 0
            note = []
            if frame_pairs and len(lmd_values) < len(frame_pairs):
                note.append(f"no face in {len(frame_pairs) - len(lmd_values)} of {len(frame_pairs)} frame pairs")
            if abs(gen.frames / (gen.fps or 1) - ref.frames / (ref.fps or 1)) > 0.5:
                note.append(f"durations differ ({gen.frames} vs {ref.frames} frames)")
            if embedder is not None:
                for label, a in (("generated", gen), ("reference", ref)):
                    if a.sync_note:
                        note.append(f"{label}: {a.sync_note}")
            rows.append({
                "name": name, "generated": str(gpath), "reference": str(rpath),
                "frames_generated": gen.frames, "frames_reference": ref.frames,
                "fps_generated": gen.fps, "fps_reference": ref.fps,
                "fid_video": fid_from_features(gen.features, ref.features),
                "cpbd": gen.cpbd_mean, "cpbd_reference": ref.cpbd_mean,
                "lmd": float(np.mean(lmd_values)) if lmd_values else None, "lmd_frames": len(lmd_values),
                "lip_r": lips.r, "lip_amp": lips.amplitude, "silence_gap": lips.silence_gap,
                "lip_best_lag": best_lag, "lip_r_best_lag": r_best_lag,
                "sharpness": sharpness,
                "blinks_per_min": gen_eyes.per_minute, "blinks_per_min_reference": ref_eyes.per_minute,
                "eye_closure": gen_eyes.deepest, "eye_closure_reference": ref_eyes.deepest,
                "head_motion": head_motion,
                "avoff": gen.sync.offset if gen.sync else None,
                "avconf": gen.sync.confidence if gen.sync else None,
                "lse_d": gen.sync.min_dist if gen.sync else None,
                "avoff_reference": ref.sync.offset if ref.sync else None,
                "avconf_reference": ref.sync.confidence if ref.sync else None,
                "lse_d_reference": ref.sync.min_dist if ref.sync else None,
                "note": "; ".join(note),
            })
            plots.append({
                "name": name,
                "lmd_series": [(i, v) for (i, _), v in zip(lmd_pairs, lmd_values)],
                "cpbd_series": gen.cpbd,
                "aperture_series": aperture_series,
                "sync_conf": gen.sync.frame_conf if gen.sync else None,
                "avoff": gen.sync.offset if gen.sync else None,
            })
    finally:
        bar.close()

    fid = fid_from_features(gen_stats, ref_stats)
    if fid is None:
        notes.append("FID not computed: it needs at least 2 frames on each side.")
    if not all_lmd:
        notes.append("LMD not computed: no frame pair with a face in both videos.")
    if not any(r["lip_r"] is not None for r in rows):
        notes.append("lip r / amplitude not computed: fewer than 3 frame pairs with a face in both videos, "
                      "or the reference mouth never moves.")
    if not any(r["silence_gap"] is not None for r in rows):
        notes.append("silence gap not computed: no silent frame (a pause of >= 120 ms, 20 dB below the "
                     "speech level) with a face in both videos.")
    synced = [r for r in rows if r["avoff"] is not None]
    if embedder is not None and not synced:
        notes.append("AVOff/AVConf not computed: no video could be scored by SyncNet (see the per-video notes).")
    summary: dict[str, Any] = {
        "fid": fid,
        "cpbd": _mean(all_cpbd),
        "lmd": _mean(all_lmd),
        "avoff": _mean(r["avoff"] for r in rows),
        "avconf": _mean(r["avconf"] for r in rows),
        "lse_d": _mean(r["lse_d"] for r in rows),
        "lip_r": _mean(r["lip_r"] for r in rows),
        "lip_amp": _mean(r["lip_amp"] for r in rows),
        "silence_gap": _mean(r["silence_gap"] for r in rows),
        "sharpness": _mean(r["sharpness"] for r in rows),
        "blinks_per_min": _mean(r["blinks_per_min"] for r in rows),
        "eye_closure": _mean(r["eye_closure"] for r in rows),
        "head_motion": _mean(r["head_motion"] for r in rows),
        "reference": {
            "fid": 0.0, "cpbd": _mean(all_cpbd_ref), "lmd": 0.0,
            "lip_r": 1.0, "lip_amp": 1.0, "silence_gap": 0.0, "sharpness": 1.0,
            "blinks_per_min": _mean(r["blinks_per_min_reference"] for r in rows),
            "eye_closure": _mean(r["eye_closure_reference"] for r in rows),
            "head_motion": 1.0 if any(r["head_motion"] is not None for r in rows) else None,
            "avoff": _mean(r["avoff_reference"] for r in rows),
            "avconf": _mean(r["avconf_reference"] for r in rows),
            "lse_d": _mean(r["lse_d_reference"] for r in rows),
        },
        "videos": len(rows),
        "frames": {"generated": sum(r["frames_generated"] for r in rows),
                   "reference": sum(r["frames_reference"] for r in rows),
                   "fid_generated": gen_stats.n, "fid_reference": ref_stats.n, "cpbd": len(all_cpbd),
                   "lmd": len(all_lmd), "lip": lip_pairs, "silent": silent_pairs, "sync": sync_clips},
        "syncnet": syncnet_name,
        "settings": {"frame_step": frame_step, "detect_every": detect_every, "device": str(dev)},
        "notes": notes,
    }
    out.mkdir(parents=True, exist_ok=True)
    report.write_csv(out / "per_video.csv", rows)
    report.write_json(out / "summary.json", summary)
    report.write_markdown(out / "summary.md", summary, rows)
    report.write_plots(out, plots)
    return summary
