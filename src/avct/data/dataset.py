"""Reading a dataset written by ``avct preprocess`` (format: ``docs/dataset.md``).

Pure reading, no torch: the training stages build their torch Datasets on top of this. Everything is
memory-mapped (``np.load(mmap_mode="r")``), so opening a clip costs a few file opens and a training
sample reads only the frames it uses, straight from the page cache, with no video decoding.

>>> ds = TalkingHeadDataset("DATASET")                      # doctest: +SKIP
>>> clip = ds.clip(0)                                       # doctest: +SKIP
>>> clip.frame_range(10, 34).shape                          # (24, 256, 256, 3) uint8   # doctest: +SKIP
>>> clip.feature_rows(10, 34).shape                         # (24, 4, 41) float32       # doctest: +SKIP

Alignment: frame i <-> feature rows 4i..4i+3 <-> phoneme_ids[i] <-> poses[i] <-> mouth_boxes[i] <->
audio samples 640i..640i+639. Only the first ``usable_frames`` frames have all of them.

Picklable (for DataLoader workers): open memory maps are dropped when pickled and reopened on use.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AvctError
from ..media import FPS, IMAGE_SIZE, ROWS_PER_FRAME, SAMPLES_PER_FRAME, SAMPLE_RATE

FORMAT = "avct-dataset"
SUPPORTED_VERSIONS = (1,)
FEATURE_DIM = 41


@dataclass(frozen=True)
class ClipInfo:
    """One clip's entry of index.json."""

    name: str
    frames: int
    usable_frames: int
    speaker: str | None
    source: str
    lost_frames: int = 0


class ClipArrays:
    """The arrays of one clip, memory-mapped on first access (read-only)."""

    def __init__(self, folder: Path, info: ClipInfo) -> None:
        self.folder = Path(folder)
        self.info = info
        if not (self.folder / "DONE").is_file():
            raise AvctError(f"clip {info.name} in {self.folder.parent.parent} is incomplete (no DONE marker); "
                            "re-run avct preprocess")

    @property
    def name(self) -> str:
        return self.info.name

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder, "info": self.info}  # not the memory maps (they would be copied)

    def _load(self, file: str, dtype: Any, shape: tuple[int | None, ...], mmap: bool = True) -> np.ndarray:
        """np.load with a one-line AvctError when the file is missing or not what the format says."""
        path = self.folder / file
        try:
            arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except FileNotFoundError:
            raise AvctError(f"dataset file missing: {path}; re-run avct preprocess") from None
        except (OSError, ValueError) as e:
            raise AvctError(f"cannot read dataset file {path}: {e}") from None
        ok = arr.dtype == np.dtype(dtype) and arr.ndim == len(shape) and all(
            want is None or have == want for have, want in zip(arr.shape, shape))
        if not ok:
            raise AvctError(f"dataset file {path} has {arr.dtype} {arr.shape}, expected {np.dtype(dtype)} "
                            f"{tuple('*' if s is None else s for s in shape)}")
        return arr

    # -- the arrays (shapes as in docs/dataset.md) ---------------------------------------------------
    @cached_property
    def frames(self) -> np.ndarray:
        """(T, 256, 256, 3) uint8 RGB, memory-mapped."""
        return self._load("frames.npy", np.uint8, (None, IMAGE_SIZE, IMAGE_SIZE, 3))

    @cached_property
    def audio(self) -> np.ndarray:
        """(N,) float32 16 kHz mono on the int16 scale (as ``load_audio`` returns it)."""
        return self._load("audio.npy", np.float32, (None,))

    @cached_property
    def features(self) -> np.ndarray:
        """(R, 41) float32 acoustic features at 100 Hz."""
        return self._load("features.npy", np.float32, (None, FEATURE_DIM))

    @cached_property
    def phoneme_ids(self) -> np.ndarray:
        """(P,) int64 phoneme id per frame (avct.audio.phonemes.PHONEMES)."""
        return self._load("phoneme_ids.npy", np.int64, (None,), mmap=False)

    @cached_property
    def poses(self) -> np.ndarray:
        """(T, 6) float32 head pose per frame [Rx, Ry, Rz (rad), Tx, Ty, Tz (mm)]."""
        return self._load("poses.npy", np.float32, (self.info.frames, 6), mmap=False)

    @cached_property
    def landmarks(self) -> np.ndarray:
        """(T, 68, 2) float32 landmarks in the 256² crop, NaN where the face was lost."""
        return self._load("landmarks.npy", np.float32, (self.info.frames, 68, 2), mmap=False)

    @cached_property
    def mouth_boxes(self) -> np.ndarray:
        """(T, 4) int32 square mouth boxes (x0, y0, x1, y1), right/bottom exclusive."""
        return self._load("mouth_boxes.npy", np.int32, (self.info.frames, 4), mmap=False)

    @cached_property
    def face_found(self) -> np.ndarray:
        """(T,) bool: the face was detected on this frame (else its pose/mouth box are interpolated)."""
        return ~np.isnan(self.landmarks[:, 0, 0])

    @cached_property
    def meta(self) -> dict[str, Any]:
        try:
            return json.loads((self.folder / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise AvctError(f"cannot read {self.folder / 'meta.json'}: {e}") from None

    @property
    def num_frames(self) -> int:
        return self.info.frames

    @property
    def usable_frames(self) -> int:
        """Frames that have a crop, 4 feature rows and a phoneme id (the trainable prefix)."""
        return self.info.usable_frames

    def words(self):
        """The phonemes.json words (official format)."""
        from ..audio.phonemes import read_phoneme_json

        return read_phoneme_json(self.folder / "phonemes.json")

    # -- frame ranges ----------------------------------------------------------------------------
    def _check(self, start: int, stop: int, limit: int | None = None) -> None:
        limit = self.usable_frames if limit is None else limit
        if not 0 <= start <= stop <= limit:
            raise IndexError(f"frame range [{start}, {stop}) outside [0, {limit}) of clip {self.name}")

    def frame_range(self, start: int, stop: int) -> np.ndarray:
        """(stop - start, 256, 256, 3) uint8 view of the memory map (copy it before writing)."""
        self._check(start, stop, self.num_frames)
        return self.frames[start:stop]

    def feature_rows(self, start: int, stop: int) -> np.ndarray:
        """(stop - start, 4, 41) float32: the 4 feature rows of each frame."""
        self._check(start, stop)
        rows = self.features[ROWS_PER_FRAME * start: ROWS_PER_FRAME * stop]
        return np.asarray(rows).reshape(stop - start, ROWS_PER_FRAME, FEATURE_DIM)

    def audio_range(self, start: int, stop: int) -> np.ndarray:
        """The 16 kHz samples of frames [start, stop) (640 per frame; shorter only at the clip's end)."""
        self._check(start, stop, self.num_frames)
        return np.asarray(self.audio[SAMPLES_PER_FRAME * start: SAMPLES_PER_FRAME * stop])

    def phoneme_range(self, start: int, stop: int) -> np.ndarray:
        self._check(start, stop)
        return self.phoneme_ids[start:stop]

    def pose_range(self, start: int, stop: int) -> np.ndarray:
        self._check(start, stop, self.num_frames)
        return self.poses[start:stop]

    def mouth_box_range(self, start: int, stop: int) -> np.ndarray:
        self._check(start, stop, self.num_frames)
        return self.mouth_boxes[start:stop]

    def __repr__(self) -> str:
        return f"ClipArrays({self.name!r}, frames={self.num_frames}, usable={self.usable_frames})"


def read_index(index: Path) -> dict[str, Any]:
    """The parsed ``index.json``, checked to be an avct dataset index."""
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise AvctError(f"cannot read the dataset index {index}: {e}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise AvctError(f"{index} is not an avct dataset index")
    return data


class TalkingHeadDataset:
    """The clips of a dataset folder (its ``index.json``); ``clip(i)`` opens one clip's arrays."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        index = self.root / "index.json"
        if not index.is_file():
            raise AvctError(f"no dataset at {self.root} (index.json missing); create one with avct preprocess")
        data = read_index(index)
        if data.get("version") not in SUPPORTED_VERSIONS:
            raise AvctError(f"{index} has dataset format version {data.get('version')}; this avct reads "
                            f"version(s) {', '.join(map(str, SUPPORTED_VERSIONS))}: re-run avct preprocess")
        for key, want in (("fps", FPS), ("sample_rate", SAMPLE_RATE), ("image_size", IMAGE_SIZE)):
            if data.get(key) != want:
                raise AvctError(f"{index}: {key} is {data.get(key)}, expected {want}")
        try:
            self.clips: list[ClipInfo] = [
                ClipInfo(name=str(c["name"]), frames=int(c["frames"]), usable_frames=int(c["usable_frames"]),
                         speaker=c.get("speaker"), source=str(c.get("source", "")),
                         lost_frames=int(c.get("lost_frames", 0)))
                for c in data.get("clips", [])]
        except (KeyError, TypeError, ValueError):
            raise AvctError(f"{index}: malformed clip entry (needs name, frames, usable_frames)") from None
        self.skipped: list[dict[str, str]] = list(data.get("skipped", []))
        self._by_name = {c.name: i for i, c in enumerate(self.clips)}
        self._open: dict[int, ClipArrays] = {}

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def usable_frames(self) -> int:
        """Total trainable frames of all clips."""
        return sum(c.usable_frames for c in self.clips)

    def speakers(self) -> list[str | None]:
        return list(dict.fromkeys(c.speaker for c in self.clips))

    def index_of(self, name: str) -> int:
        try:
            return self._by_name[name]
        except KeyError:
            raise AvctError(f"no clip named {name!r} in {self.root}") from None

    def clip(self, i: int | str) -> ClipArrays:
        """The arrays of clip ``i`` (position in ``clips`` or name); opened once, then cached."""
        if isinstance(i, str):
            i = self.index_of(i)
        if i not in self._open:
            info = self.clips[i]
            self._open[i] = ClipArrays(self.root / "clips" / info.name, info)
        return self._open[i]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_open"] = {}  # memory maps would be pickled as copies of the data: reopen instead
        return state

    def __repr__(self) -> str:
        return f"TalkingHeadDataset({str(self.root)!r}, clips={len(self)}, usable_frames={self.usable_frames})"
