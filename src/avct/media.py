"""The media every part of avct agrees on, stated once: 25 fps video, 16 kHz mono speech, acoustic
features at 100 Hz (four rows per video frame), 256² face crops, the mouth-box margin and the
file suffixes taken for videos. Everything else imports these from here."""
from __future__ import annotations

FPS = 25                                 # video frames per second (the official data and every output)
SAMPLE_RATE = 16000                      # speech samples per second, mono
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS   # 640: the audio of one 40 ms video frame
ROWS_PER_FRAME = 4                       # acoustic feature rows (10 ms each) per video frame
IMAGE_SIZE = 256                         # the networks' square face crop, pixels
MOUTH_MARGIN = 0.25                      # mouth box: side = (1 + 2 * margin) * max(mouth width, height)
# Files taken as videos when a folder is searched (preprocess inputs, evaluate folders).
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".flv",
                            ".wmv", ".ts", ".mts", ".3gp"})
