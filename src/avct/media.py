"""The media every part of avct agrees on, stated once: 25 fps video, 16 kHz mono speech, acoustic
features at 100 Hz (four rows per video frame), 256² face crops, the mouth-box margin and the
file suffixes taken for videos. Everything else imports these from here."""
from __future__ import annotations

from pathlib import Path

FPS = 25                                 # video frames per second (the official data and every output)
SAMPLE_RATE = 16000                      # speech samples per second, mono
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS   # 640: the audio of one 40 ms video frame
ROWS_PER_FRAME = 4                       # acoustic feature rows (10 ms each) per video frame
IMAGE_SIZE = 256                         # the networks' square face crop, pixels
MOUTH_MARGIN = 0.25                      # mouth box: side = (1 + 2 * margin) * max(mouth width, height)
# Files taken as videos when a folder is searched (preprocess inputs, evaluate folders): video_files().
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".flv",
                            ".wmv", ".ts", ".mts", ".3gp"})


def video_files(folder: Path, *, recursive: bool = False) -> list[Path]:
    """The video files of a folder (by :data:`VIDEO_SUFFIXES`, any case), sorted; hidden files and files
    in hidden folders are left out. ``recursive``: subfolders too."""
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(f for f in candidates if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES
                  and not any(part.startswith(".") for part in f.relative_to(folder).parts))
