"""``preprocess()``: the run over all inputs (folders searched for videos, the dataset locked, each clip
processed or reused, the index and report written), and the inputs' transcripts."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterable

from ...errors import AvctError
from ...media import video_files
from .audio import PHONEME_MODES
from .clip import preprocess_one, remove_stale_temporaries
from .index import DatasetLock, DatasetIndex
from .report import ClipOutcome, MIN_SECONDS, PreprocessReport, write_report


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
    with DatasetLock(root):
        index = DatasetIndex.load(root)
        remove_stale_temporaries(root / "clips")
        bar = _progress(len(inputs), progress)
        try:
            for path in inputs:
                bar.set_postfix_str(path.name[-40:], refresh=False)
                outcome = preprocess_one(path, root, index, transcripts=transcripts, phonemes=phonemes,
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
            write_report(root, report, phonemes=phonemes, max_seconds=max_seconds, **delay)
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
            files = video_files(p, recursive=True)
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
