"""A tiny real dataset in the documented format (docs/dataset.md), for the training and evaluation tests.

Two 2-second clips cut from the first 4 s of ``obama_weekly_address_lia_47s.mov`` (already a 256²
crop at 25 fps): real frames, real audio and real 41-d features. What is synthetic, to stay fast:
- poses: a smooth sequence (sums of slow sines around Rx,Ry,Rz = 0 rad, T = (0, 20, 250) mm), not
  estimated from the frames;
- landmarks: the mean face projected at those poses (``avct.face.head_pose.project_face``);
- mouth boxes: one fixed square per clip around the projected mouth;
- phonemes: all SIL.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from avct.audio.phonemes import SIL_ID as SIL
from avct.media import FPS, ROWS_PER_FRAME, SAMPLE_RATE as RATE

VIDEO = "obama_weekly_address_lia_47s.mov"
CLIP_FRAMES = 50


def synthetic_poses(n: int, phase: float) -> np.ndarray:
    """(n, 6) smooth head poses [Rx, Ry, Rz (rad), Tx, Ty, Tz (mm)]."""
    t = np.arange(n, dtype=np.float64) / FPS + phase
    return np.stack([0.08 * np.sin(2.1 * t), 0.12 * np.sin(1.3 * t + 0.5), 0.04 * np.sin(0.9 * t + 1.0),
                     6.0 * np.sin(0.7 * t), 20.0 + 4.0 * np.sin(1.1 * t), 250.0 + 10.0 * np.sin(0.5 * t)],
                    axis=1).astype(np.float32)


def build_tiny_dataset(video: Path, out: Path, clips: int = 2, clip_frames: int = CLIP_FRAMES) -> Path:
    from avct.audio.decode import load_audio
    from avct.audio.features import acoustic_features
    from avct.face.head_pose import project_face
    from avct.video.reader import read_video

    frames_iter = read_video(video)
    frames = np.stack([next(frames_iter) for _ in range(clips * clip_frames)])
    frames_iter.close()
    samples = load_audio(video).samples
    per_clip = RATE * clip_frames // FPS
    extra = 240  # as `avct preprocess`: 15 ms more complete the last frame's features, so R = 4 T
    entries = []
    for c in range(clips):
        name = f"obama_{c:02d}"
        d = out / "clips" / name
        d.mkdir(parents=True)
        audio = samples[c * per_clip:(c + 1) * per_clip + extra]
        features = acoustic_features(audio, RATE).astype(np.float32)
        poses = synthetic_poses(clip_frames, phase=3.0 * c)
        landmarks = np.stack([project_face(p) for p in poses]).astype(np.float32)
        mouth = landmarks[:, 48:68].reshape(-1, 2)
        cx, cy = mouth.mean(axis=0)
        half = int(np.ceil(np.abs(mouth - [cx, cy]).max())) + 8
        box = np.array([cx - half, cy - half, cx + half, cy + half]).round().astype(np.int32)
        np.save(d / "frames.npy", frames[c * clip_frames:(c + 1) * clip_frames])
        np.save(d / "audio.npy", audio.astype(np.float32))  # int16 scale, as load_audio returns it
        np.save(d / "features.npy", features)
        (d / "phonemes.json").write_text(json.dumps(
            [{"word": "sil", "phones": [{"ph": "SIL", "bg": 0, "ed": clip_frames * 4}]}]))
        np.save(d / "phoneme_ids.npy", np.full(clip_frames, SIL, np.int64))
        np.save(d / "poses.npy", poses)
        np.save(d / "landmarks.npy", landmarks)
        np.save(d / "mouth_boxes.npy", np.tile(box, (clip_frames, 1)))
        (d / "meta.json").write_text(json.dumps({
            "source": str(video), "source_fps": FPS, "source_size": [256, 256], "crop_box": [0, 0, 256, 256],
            "start_frame": c * clip_frames, "frames": clip_frames, "poses": "synthetic", "phonemes": "all SIL"}))
        (d / "DONE").touch()
        usable = min(clip_frames, len(features) // ROWS_PER_FRAME, clip_frames)  # = 50
        entries.append({"name": name, "frames": clip_frames, "usable_frames": usable, "speaker": "obama",
                        "source": str(video), "lost_frames": 0})
    (out / "index.json").write_text(json.dumps({
        "format": "avct-dataset", "version": 1, "fps": FPS, "sample_rate": RATE, "image_size": 256,
        "clips": entries, "skipped": []}, indent=1))
    return out
