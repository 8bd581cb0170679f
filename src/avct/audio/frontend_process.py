"""One job's speech front-end (decode, features, phonemes) in a process of its own, started first.

Why: a cold ``avct generate`` spends its first seconds on work that needs no speech (importing torch,
loading dlib's and the networks' weights, finding the face) and then on speech work that needs no
torch (decoding, features, phoneme recognition). Both hold a core and most of it holds the GIL
(imports, pocketsphinx), so a thread would not overlap them; a process started before torch is
imported does, and the first frame comes that much sooner (README, Speed). A process that already
has its models loaded (``avct batch``, the server) keeps its in-process front-end: its recogniser is
warm there, and a new process would have to load it again.

The child imports only the audio modules (no torch) and sends back, over a pipe: the duration once
decoded, its progress, the warnings it raised (re-issued here, so they print as this process' own)
and the result, or the one-line error of a bad input.
"""
from __future__ import annotations

import multiprocessing
import traceback
import warnings
from typing import Callable

import numpy as np

from ..errors import AvctError
from .phonemes import Word

PROGRESS_STEP = 0.01  # the child reports progress in steps of at least this much (bounded pipe traffic)


def _front_end(conn, audio: str, phonemes: str | None, transcript: str | None, f0: str) -> None:
    """The child: decode, features and phonemes of ``audio``, every event sent over ``conn``."""
    from .frontend import speech_front_end

    last = [0.0]

    def progress(fraction: float) -> None:
        if fraction >= 1.0 or fraction - last[0] >= PROGRESS_STEP:
            last[0] = fraction
            conn.send(("progress", fraction))

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            features, words = speech_front_end(audio, phonemes=phonemes, transcript=transcript, f0=f0,
                                               on_progress=progress,
                                               on_decoded=lambda seconds: conn.send(("decoded", seconds)))
        for w in caught:
            conn.send(("warning", str(w.message), w.category))
        conn.send(("done", features, words))
    except AvctError as e:
        conn.send(("error", str(e)))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the parent reports it
        pass
    except BaseException:  # a bug, not a bad input: the parent raises it with this traceback
        conn.send(("crash", traceback.format_exc()))
    finally:
        conn.close()


class FrontendProcess:
    """The front-end of ``audio`` running in a child process from construction on.

    ``result()`` waits for it and returns ``(features (T, 41) float32, words)`` as
    :func:`avct.audio.frontend.speech_front_end` would, raising its AvctError for bad audio;
    ``close()`` stops it if still running (always call it, e.g. in ``finally``)."""

    def __init__(self, audio: str, *, phonemes: str | None = None, transcript: str | None = None,
                 f0: str = "fast") -> None:
        context = multiprocessing.get_context("spawn")  # no fork: safe on every OS and beside any threads
        self._conn, child = context.Pipe(duplex=False)
        self._process = context.Process(target=_front_end, args=(child, str(audio), None if phonemes is None
                                                                  else str(phonemes), transcript, f0),
                                        name="avct-frontend", daemon=True)
        self._process.start()
        child.close()

    def result(self, on_progress: Callable[[float], None] | None = None,
               on_decoded: Callable[[float], None] | None = None) -> tuple[np.ndarray, list[Word]]:
        """Wait for the child; pass on its duration (``on_decoded``) and progress (``on_progress``)."""
        while True:
            try:
                kind, *payload = self._conn.recv()
            except EOFError:
                raise RuntimeError(f"the speech front-end process ended without a result "
                                   f"(exit code {self._process.exitcode})") from None
            if kind == "decoded" and on_decoded is not None:
                on_decoded(payload[0])
            elif kind == "progress" and on_progress is not None:
                on_progress(payload[0])
            elif kind == "warning":
                warnings.warn(payload[0], payload[1], stacklevel=2)
            elif kind == "error":
                raise AvctError(payload[0])
            elif kind == "crash":
                raise RuntimeError(f"the speech front-end failed:\n{payload[0]}")
            elif kind == "done":
                return payload[0], payload[1]

    def close(self) -> None:
        """Stop the child if it still runs and release the pipe."""
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
        self._conn.close()
