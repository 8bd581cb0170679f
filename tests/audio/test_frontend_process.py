"""The front-end in a process of its own (what `avct generate` starts first): same result as in this
process, errors and warnings come back as this process' own, and it stops when asked."""
from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

from avct.audio.decode import load_audio
from avct.audio.frontend_process import FrontendProcess, features_in_parent
from avct.errors import AvctError
from avct.inference.inputs import load_speech

GOFORWARD = "audio/pocketsphinx_goforward_s16le_16k.raw"


@pytest.mark.parametrize("name, parent_features", [(GOFORWARD, False), ("audio/geneface_zozo_11s.wav", True)])
def test_same_speech_as_in_process_with_duration_and_progress(data, name, parent_features):
    """Features and phonemes bit for bit as `load_speech` computes them here, whether the child computes
    both (short audio) or the phonemes only (the features then computed in this process); the decoded
    duration and increasing progress ending at 1.0 come over too."""
    audio = data / name
    assert features_in_parent(len(load_audio(audio).samples) / 16000) == parent_features
    running = FrontendProcess(audio)
    durations, fractions = [], []
    try:
        speech = load_speech(audio, running=running, on_decoded=durations.append, on_progress=fractions.append)
    finally:
        running.close()
    here = load_speech(audio)
    np.testing.assert_array_equal(speech.features, here.features)
    np.testing.assert_array_equal(speech.phonemes, here.phonemes)
    assert durations == [len(load_audio(audio).samples) / 16000]
    assert fractions[-1] == 1.0 and np.all(np.diff(fractions) > 0)


def test_the_childs_progress_shows_while_the_features_are_computed_here(data, monkeypatch):
    """Long audio: the phonemes' progress must reach the bar while this process still computes the
    features, not after them (the bar stood still for the features' whole time, then jumped). The
    features here wait for it (up to a minute): without a reader of the child's messages they would
    wait in vain."""
    audio = data / "audio" / "geneface_zozo_11s.wav"
    fractions: list[float] = []
    computed = FrontendProcess._features_here

    def features_after_the_phonemes(self, on_progress):
        deadline = time.monotonic() + 60
        while not fractions and time.monotonic() < deadline:
            time.sleep(0.05)
        return computed(self, on_progress)

    monkeypatch.setattr(FrontendProcess, "_features_here", features_after_the_phonemes)
    running = FrontendProcess(audio)
    started = time.monotonic()
    try:
        features, words = running.result(on_progress=fractions.append)
    finally:
        running.close()
    assert time.monotonic() - started < 50, "the child's progress came only after the features"
    assert words and fractions[-1] == 1.0 and np.all(np.diff(fractions) > 0)
    np.testing.assert_array_equal(features.astype(np.float32), load_speech(audio).features)


def test_given_phonemes_and_official_f0_are_used(data):
    wav = data / "phoneme_ref" / "id01921_2kRfa3djUmQ_00036.wav"
    running = FrontendProcess(wav, phonemes=wav.with_suffix(".json"), f0="official")
    try:
        speech = load_speech(wav, running=running)
    finally:
        running.close()
    here = load_speech(wav, phonemes=wav.with_suffix(".json"), f0="official")
    np.testing.assert_array_equal(speech.features, here.features)
    np.testing.assert_array_equal(speech.phonemes, here.phonemes)


@pytest.mark.parametrize("name", ["edge_bad_fmtchunk.wav", "edge_null_0samples.wav"])
def test_bad_audio_is_this_process_avct_error(data, name):
    """The child's one-line error for a bad input, raised here as the AvctError it would have been."""
    running = FrontendProcess(data / "audio" / name)
    try:
        with pytest.raises(AvctError, match=name):
            running.result()
    finally:
        running.close()


@pytest.mark.parametrize("name", [GOFORWARD, "audio/geneface_zozo_11s.wav"])
def test_warnings_are_reissued_here(data, name):
    """A transcript without words: the recogniser warns (in the child) and recognises instead. Long audio
    too, whose child messages a reader thread takes while the features are computed here."""
    running = FrontendProcess(data / name, transcript="...")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            running.result()
    finally:
        running.close()
    assert any("the transcript has no words" in str(w.message) for w in caught)


def test_close_stops_a_running_front_end(data):
    running = FrontendProcess(data / "audio" / "adamschiff_30s.wav")  # ~20 s of work
    time.sleep(1.0)
    started = time.perf_counter()
    running.close()
    assert time.perf_counter() - started < 5
    assert running._process.exitcode is not None and not running._process.is_alive()


def test_work_while_waiting_gets_the_features_and_stops_when_the_phonemes_arrive(data):
    """Long audio: once this process has the features, ``while_waiting(features, stop)`` runs in a thread
    while the child recognises; ``stop`` is set when the phonemes arrive and its error, if any, is raised
    here after them."""
    audio = data / "audio" / "geneface_zozo_11s.wav"
    seen = {}

    def work(features, stop):
        seen["features"] = features
        seen["stopped"] = stop.wait(60)  # returns True once the phonemes are in

    running = FrontendProcess(audio)
    try:
        speech = load_speech(audio, running=running, while_waiting=work)
    finally:
        running.close()
    assert seen["stopped"] is True
    np.testing.assert_array_equal(seen["features"].astype(np.float32), speech.features)

    def broken(features, stop):
        raise ValueError("a bug in the waiting work")

    running = FrontendProcess(audio)
    try:
        with pytest.raises(ValueError, match="a bug in the waiting work"):
            load_speech(audio, running=running, while_waiting=broken)
    finally:
        running.close()
