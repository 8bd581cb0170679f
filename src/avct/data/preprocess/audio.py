"""A clip's audio: its span of the track (``audio_delay`` included), the 41-d features and the phonemes."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...media import SAMPLE_RATE
from .report import MIN_SECONDS, Skip


# The 41-d features of the last frame need a full 25 ms analysis window: 15 ms of audio past the end of
# the video are kept so that 640 T + 240 samples give exactly 4 T feature rows and T phoneme ids.
AUDIO_TAIL = 240
PHONEME_MODES = ("recognize", "none")


def audio_span(samples: np.ndarray, start: int, length: int) -> np.ndarray:
    """``samples[start:start + length]`` where ``start`` may be negative (leading silence); shorter only
    when the track ends first."""
    lead = min(max(-start, 0), length)
    body = samples[max(start, 0): max(start, 0) + length - lead]
    return np.concatenate([np.zeros(lead, dtype=samples.dtype), body]) if lead else body


def write_audio_tracks(folder: Path, samples: np.ndarray, *, transcript: str | None,
                       phonemes: str) -> dict[str, Any]:
    """audio.npy, features.npy, phonemes.json, phoneme_ids.npy; returns their sizes for meta.json."""
    from ...audio.features import acoustic_features
    from ...audio.phonemes import Phone, Word, frame_phoneme_ids, write_phoneme_json

    if len(samples) < MIN_SECONDS * SAMPLE_RATE:
        raise Skip(f"the audio track covers only {len(samples) / SAMPLE_RATE:.2f} s of the video "
                    f"(at least {MIN_SECONDS:g} s needed)")
    if np.ptp(samples) == 0:
        raise Skip("the audio track is silent (all samples equal)")
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
