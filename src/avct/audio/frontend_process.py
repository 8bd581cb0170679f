"""One job's speech front-end, started first in a process of its own.

Why a process: a cold ``avct generate`` spends its first seconds on work that needs no speech
(importing torch, loading dlib's and the networks' weights, finding the face) and then on speech work
that needs no torch (decoding, features, phoneme recognition). Most of both holds the GIL (imports,
pocketsphinx), so a thread would not overlap them; a process started before torch is imported does.

Who computes the features: for short audio the child does it all, ready before this process has
loaded the networks. For audio longer than FEATURES_IN_PARENT_S the child only recognises the phonemes
and this process computes the features once it has loaded the networks (it would otherwise sit idle,
waiting for speech), decoding the audio again for that (cheap beside the features, docs/frontend.md).
Beside the recogniser in one process the features would hardly overlap it: pocketsphinx holds the GIL
for a whole piece of audio (up to 30 s), so the features' thread ran only between pieces.
``benchmarks/first_frame.py`` measures the first frame either way (docs/performance.md, "First frame").

A process that already has its models loaded (``avct batch``, the server) keeps its in-process front-end
(:func:`avct.audio.frontend.speech_front_end`): its recogniser is warm there, and a new process would
have to load it again.

The child imports only the audio modules (no torch) and sends back, over a pipe: the duration once
decoded, its progress, the warnings it raised (re-issued here, so they print as this process' own) and
the result, or the one-line error of a bad input.
"""
from __future__ import annotations

import multiprocessing
import threading
import traceback
import warnings
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Callable

import numpy as np

from ..errors import AvctError
from .frontend import FEATURE_COST, PHONEME_COST, CombinedProgress
from .phonemes import Word

PROGRESS_STEP = 0.01  # the child reports progress in steps of at least this much (bounded pipe traffic)
# Audio longer than this: the features are computed in the parent once it has loaded the networks. Shorter
# audio is done in the child, features and phonemes, before the parent is ready: in the parent they would
# start only after the imports and the networks, which delays a short clip's first frame
# (docs/performance.md, "First frame").
FEATURES_IN_PARENT_S = 10.0


def features_in_parent(seconds: float) -> bool:
    """Whether the parent computes the features of ``seconds`` of decoded speech (the child and the
    parent both apply this one rule)."""
    return seconds > FEATURES_IN_PARENT_S


def _child(conn, audio: str, phonemes_given: bool, transcript: str | None, f0: str) -> None:
    """The child: decode ``audio``, then the features (phonemes given as a file), the phonemes (long
    audio: the parent computes the features) or both; every event sent over ``conn``."""
    from ..media import SAMPLE_RATE
    from .decode import load_audio
    from .features import acoustic_features
    from .frontend import features_and_phonemes

    last = [0.0]

    def progress(fraction: float) -> None:
        if fraction >= 1.0 or fraction - last[0] >= PROGRESS_STEP:
            last[0] = fraction
            conn.send(("progress", fraction))

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            decoded = load_audio(audio)
            seconds = len(decoded.samples) / decoded.sample_rate
            conn.send(("decoded", seconds))
            if phonemes_given:
                result = acoustic_features(decoded.samples, SAMPLE_RATE, f0=f0, on_progress=progress)
            elif features_in_parent(seconds):
                from .recognize import recognize_phonemes

                caught.clear()  # the parent decodes the audio too and gives the decoding's warnings itself
                result = recognize_phonemes(decoded.samples, transcript=transcript, on_progress=progress)
            else:
                result = features_and_phonemes(decoded.samples, f0=f0, transcript=transcript, on_progress=progress)
        for w in caught:
            conn.send(("warning", str(w.message), w.category))
        conn.send(("done", result))
    except AvctError as e:
        conn.send(("error", str(e)))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the parent reports it
        pass
    except BaseException:  # a bug, not a bad input: the parent raises it with this traceback
        conn.send(("crash", traceback.format_exc()))
    finally:
        conn.close()


class FrontendProcess:
    """The front-end of ``audio`` started in a child process at construction; ``result()`` finishes it.

    ``result()`` returns ``(features (T, 41), words)`` as :func:`avct.audio.frontend.speech_front_end`
    would, raising its AvctError for bad input: from the child alone, or for audio longer than
    FEATURES_IN_PARENT_S the child's phonemes and features computed here meanwhile. ``close()`` stops
    the child if it still runs (always call it, e.g. in ``finally``)."""

    def __init__(self, audio: str, *, phonemes: str | None = None, transcript: str | None = None,
                 f0: str = "fast") -> None:
        from .features import check_f0_method

        self._audio, self._phonemes, self._f0 = str(audio), None if phonemes is None else str(phonemes), check_f0_method(f0)
        context = multiprocessing.get_context("spawn")  # no fork: safe on every OS and beside any threads
        self._conn, child = context.Pipe(duplex=False)
        self._process = context.Process(target=_child, args=(child, self._audio, phonemes is not None, transcript, f0),
                                        name="avct-frontend", daemon=True)
        self._process.start()
        child.close()

    def result(self, on_progress: Callable[[float], None] | None = None,
               on_decoded: Callable[[float], None] | None = None,
               while_waiting: Callable[[np.ndarray, threading.Event], None] | None = None
               ) -> tuple[np.ndarray, list[Word]]:
        """Wait for the child (computing the features here meanwhile where the rule says so); pass on
        the duration (``on_decoded``) and the progress (``on_progress``). ``while_waiting(features,
        stop)`` runs in a thread of this process once the features are computed here, while the child
        still recognises phonemes; ``stop`` is set when they arrive (it should then return soon)."""
        words = None
        if self._phonemes is not None:
            from .phonemes import read_phoneme_json

            words = read_phoneme_json(self._phonemes)
        seconds = self._receive(on_progress)
        if on_decoded is not None:
            on_decoded(seconds)
        if words is not None:
            return self._receive(on_progress), words
        if not features_in_parent(seconds):
            return self._receive(on_progress)
        progress = CombinedProgress(on_progress, {"features": FEATURE_COST[self._f0], "phonemes": PHONEME_COST})
        # The child's messages are read while the features are computed here, so that its progress shows as
        # it comes (read afterwards, the bar stood still for the features' whole time, then jumped). Should
        # the features fail, the caller's close() stops the child and the reader ends on EOF.
        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="avct-frontend")
        warned: list[tuple[str, type[Warning]]] = []
        ahead = None
        try:
            phonemes = pool.submit(self._receive, progress.part("phonemes"), warned.append)
            features = self._features_here(progress.part("features"))
            stop = threading.Event()
            if while_waiting is not None and not phonemes.done():
                ahead = pool.submit(while_waiting, features, stop)
            try:
                wait([phonemes])
            finally:
                stop.set()
                if ahead is not None:
                    wait([ahead])
        finally:
            pool.shutdown(wait=False)
        for message, category in warned:
            warnings.warn(message, category, stacklevel=2)
        words = phonemes.result()  # the child's error, raised here
        if ahead is not None:
            ahead.result()         # the waiting work's failure, after the phonemes
        return features, words

    def _features_here(self, on_progress: Callable[[float], None]) -> np.ndarray:
        from ..media import SAMPLE_RATE
        from .decode import load_audio
        from .features import acoustic_features

        return acoustic_features(load_audio(self._audio).samples, SAMPLE_RATE, f0=self._f0, on_progress=on_progress)

    def _receive(self, on_progress: Callable[[float], None] | None,
                 on_warning: Callable[[tuple[str, type[Warning]]], None] | None = None):
        """The child's next payload ("decoded" seconds or "done" result), passing its progress on to
        ``on_progress`` and re-issuing its warnings on the way (or handing them to ``on_warning``, from a
        thread other than the caller's)."""
        while True:
            try:
                kind, *payload = self._conn.recv()
            except EOFError:
                raise RuntimeError(f"the speech front-end process ended without a result "
                                   f"(exit code {self._process.exitcode})") from None
            if kind == "progress":
                if on_progress is not None:
                    on_progress(payload[0])
            elif kind == "warning":
                if on_warning is not None:
                    on_warning((payload[0], payload[1]))
                else:
                    warnings.warn(payload[0], payload[1], stacklevel=4)
            elif kind == "error":
                raise AvctError(payload[0])
            elif kind == "crash":
                raise RuntimeError(f"the speech front-end failed:\n{payload[0]}")
            else:  # "decoded" or "done"
                return payload[0]

    def close(self) -> None:
        """Stop the child if it still runs and release the pipe."""
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
        self._conn.close()
