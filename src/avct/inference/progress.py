"""One progress bar over a whole generate job: the speech front-end, then the frames.

Why one bar weighted by expected work: the front-end (decoding, features, F0, phoneme recognition)
runs before the first frame and took a third of a long job's time without a word on screen; a bar over
frames alone started late and its first ETA, from the slow first frames, was off by an order of
magnitude. Here the job is ``FRONTEND_COST`` units per second of speech followed by ``FRAME_COST`` units
per frame, in the ratio measured for the default job (bundled weights, sharp output running the dense
motion alone; the measurements, to be redone when a phase gets faster, are in docs/performance.md,
"Progress"). Absolute speed differs between
machines but cancels out of the ETA, elapsed ÷ units done × units left (tqdm without smoothing: with its
default moving average one slow batch of frames doubled the ETA for seconds). Jobs whose frames cost
more (the renderer's picture: official checkpoints, ``--fill renderer``, ``--render classic``) start with
too short an ETA, which the frames' own rate corrects.

The ETA is shown from ``ETA_FROM`` of the job on: extrapolated from the first percent or two (decoding,
the features' first blocks, while the weights are still loading) it was off by several times the job's
length (docs/performance.md, "Progress").
"""
from __future__ import annotations

from ..media import FPS

FRONTEND_COST = 0.24  # units per second of speech
FRAME_COST = 0.0145   # units per frame
ETA_FROM = 0.05       # share of the job done before the ETA is shown
SCALE = 100           # units per bar step, so that short jobs still move smoothly


class JobProgress:
    """A tqdm bar that the front-end (``speech(fraction)``) and the video writer
    (``frames(done, total)``) move in turn. Created before the audio is decoded; ``start`` sets the
    total once the speech's duration is known."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bar = None
        self.speech_units = 0.0

    def start(self, seconds: float) -> None:
        """The speech is decoded: ``seconds`` long."""
        if not self.enabled or self.bar is not None:
            return
        from tqdm import tqdm

        self.speech_units = FRONTEND_COST * seconds * SCALE
        total = self.speech_units + FRAME_COST * seconds * FPS * SCALE
        # smoothing 0: the average rate since the start (the units model the work); miniters 1: redraw on
        # time alone (mininterval). tqdm's default, dynamic miniters, then waits for a step as large as the
        # largest so far: after the front-end's jump the bar moved only in large steps, seconds apart.
        self.bar = tqdm(total=round(total), desc="speech: ", unit="", unit_scale=False, bar_format=_format("?"),
                        smoothing=0, miniters=1)

    def speech(self, fraction: float) -> None:
        """The front-end's progress, 0..1."""
        self._move_to(self.speech_units * min(max(fraction, 0.0), 1.0))

    def frames(self, done: int, total: int) -> None:
        """``done`` of ``total`` frames are written."""
        if self.bar is None:
            return
        if not self.bar.desc.startswith("frames"):
            self.bar.set_description("frames", refresh=False)
        self.bar.set_postfix_str(f"{done}/{total} frames", refresh=False)
        frame_units = (self.bar.total - self.speech_units) * done / max(total, 1)
        self._move_to(self.speech_units + frame_units)

    def _move_to(self, units: float) -> None:
        if self.bar is not None and round(units) > self.bar.n:
            if units >= ETA_FROM * self.bar.total:
                self.bar.bar_format = _format("{remaining}")
            self.bar.update(round(units) - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _format(remaining: str) -> str:
    return "{desc}{percentage:3.0f}%|{bar}| [{elapsed}<" + remaining + "]{postfix}"
