"""Offline phonemes (pocketsphinx): official format, known answers, agreement with reference phonemes.

Agreement thresholds come from benchmarks/phonemes.py (measured per clip, 25 fps frames) with margin.
"""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from avct.audio import recognize
from avct.audio.decode import load_audio
from avct.audio.phonemes import PHONEMES, Word, frame_phoneme_ids, read_phoneme_json
from avct.audio.recognize import (chunk_bounds, normalize_transcript, number_words,
                                  recognize_phonemes, transcript_from_words)
from avct.errors import AvctError

GOFORWARD = "audio/pocketsphinx_goforward_s16le_16k.raw"  # pocketsphinx's own test: "go forward ten meters"


def check_official_format(words: list[Word], n_samples: int) -> None:
    """Contiguous phones from 0 to the audio end, valid symbols, the official word conventions."""
    phones = [p for w in words for p in w.phones]
    assert phones[0].bg == 0 and phones[-1].ed == n_samples // 160
    for a, b in zip(phones, phones[1:]):
        assert a.ed == b.bg
    assert all(p.bg < p.ed for p in phones)
    assert all(p.ph in PHONEMES and p.ph != "NSN" for p in phones)
    for w in words:
        if w.word == "sil":
            assert [p.ph for p in w.phones] == ["SIL"]
        else:
            assert re.fullmatch(r"[A-Z'.\-]+", w.word), w.word  # upper-case, no "(2)" (cmudict has E-MAILS, A.)
    assert not any(a.word == b.word == "sil" for a, b in zip(words, words[1:]))
    assert len(frame_phoneme_ids(words)) == int(phones[-1].ed / 100 * 25)


def agreement(words: list[Word], ref: list[Word]) -> float:
    ours, theirs = frame_phoneme_ids(words), frame_phoneme_ids(ref)
    ours = (ours + [ours[-1]] * len(theirs))[: len(theirs)]
    return float(np.mean(np.asarray(ours) == np.asarray(theirs)))


@pytest.fixture(scope="module")
def goforward(data) -> np.ndarray:
    return load_audio(data / GOFORWARD).samples


def ref_clip(data, name: str) -> tuple[np.ndarray, list[Word]]:
    folder = data / "phoneme_ref"
    return load_audio(folder / f"{name}.wav").samples, read_phoneme_json(folder / f"{name}.json")


# --- known answers ------------------------------------------------------------------------------------


def test_words_mode_recognises_go_forward(goforward):
    words = recognize_phonemes(goforward)
    check_official_format(words, len(goforward))
    assert transcript_from_words(words) == "GO FORWARD TEN METERS"
    assert [p.ph for w in words if w.word == "FORWARD" for p in w.phones] == ["F", "AO", "R", "W", "ER", "D"]


def test_transcript_is_normalised_and_aligned(goforward):
    words = recognize_phonemes(goforward, transcript="  Go forward, ten METERS! ")
    check_official_format(words, len(goforward))
    assert transcript_from_words(words) == "GO FORWARD TEN METERS"
    speech = [w for w in words if w.word != "sil"]
    assert 0.3 < speech[0].phones[0].bg / 100 < 0.7  # speech starts ~0.5 s in
    assert words[0].word == words[-1].word == "sil"


@pytest.mark.parametrize("name,minimum", [("id02039_bV0jGP-CtN4_00308", 0.75),  # measured 0.847
                                          ("id01921_2kRfa3djUmQ_00036", 0.75)])  # measured 0.835
def test_forced_alignment_agrees_with_reference(data, name, minimum):
    samples, ref = ref_clip(data, name)
    words = recognize_phonemes(samples, transcript=transcript_from_words(ref))
    check_official_format(words, len(samples))
    assert transcript_from_words(words) == transcript_from_words(ref)
    assert agreement(words, ref) >= minimum


def test_words_mode_agrees_with_reference(data):
    samples, ref = ref_clip(data, "id01921_2kRfa3djUmQ_00036")
    words = recognize_phonemes(samples, mode="words")
    check_official_format(words, len(samples))
    assert agreement(words, ref) >= 0.65  # measured 0.783


def test_allphone_mode(data):
    samples, ref = ref_clip(data, "id01921_2kRfa3djUmQ_00036")
    words = recognize_phonemes(samples, mode="allphone")
    check_official_format(words, len(samples))
    assert {w.word for w in words} <= {"sil", "UNK"} and transcript_from_words(words) == ""
    assert agreement(words, ref) >= 0.33  # measured 0.435


def test_long_audio_with_transcript_is_cut_between_words(data):
    """58 s > MAX_CHUNK_S: word-aligned as a whole, then phone-aligned in pieces."""
    samples, ref = ref_clip(data, "trump")
    words = recognize_phonemes(samples, transcript=transcript_from_words(ref))
    check_official_format(words, len(samples))
    assert transcript_from_words(words) == transcript_from_words(ref)
    assert agreement(words, ref) >= 0.72  # measured 0.811


# --- chunking (forced small so it is cheap) -----------------------------------------------------------


def test_chunk_bounds_cover_the_audio_in_pieces_of_bounded_length():
    rng = np.random.default_rng(1)
    pcm = (rng.standard_normal(16000 * 75) * 1000).astype(np.int16)
    pcm[16000 * 27: 16000 * 28] //= 100  # a quiet second: the first cut should land in it
    bounds = chunk_bounds(pcm)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(pcm)
    assert all(b == c for (_, b), (c, _) in zip(bounds, bounds[1:]))
    assert all(b - a <= 30 * 16000 and a % 160 == 0 for a, b in bounds)
    assert 27 * 16000 <= bounds[0][1] <= 28 * 16000


@pytest.mark.parametrize("transcript", [None, "go forward ten meters"])
def test_pieces_are_stitched_contiguously(goforward, monkeypatch, transcript):
    monkeypatch.setattr(recognize, "MAX_CHUNK_S", 1.2)
    monkeypatch.setattr(recognize, "CUT_SEARCH_S", 0.5)
    assert len(chunk_bounds(recognize._to_pcm(goforward))) == 3
    words = recognize_phonemes(goforward, transcript=transcript)
    check_official_format(words, len(goforward))
    if transcript:
        assert transcript_from_words(words) == "GO FORWARD TEN METERS"


# --- robustness ---------------------------------------------------------------------------------------


def test_out_of_vocabulary_word_warns_and_keeps_going(goforward):
    with pytest.warns(UserWarning, match="zorblaxes"):
        words = recognize_phonemes(goforward, transcript="go forward ten zorblaxes")
    check_official_format(words, len(goforward))
    assert transcript_from_words(words) == "GO FORWARD TEN ZORBLAXES"
    assert {p.ph for w in words if w.word == "ZORBLAXES" for p in w.phones} == {"SIL"}


def test_transcript_without_words_falls_back_to_recognition(goforward):
    with pytest.warns(UserWarning, match="no words"):
        words = recognize_phonemes(goforward, transcript=" ,.!? ")
    assert transcript_from_words(words) == "GO FORWARD TEN METERS"


def test_wrong_transcript_still_gives_valid_output(goforward):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        words = recognize_phonemes(goforward, transcript="the quick brown fox jumps over the lazy dog")
    check_official_format(words, len(goforward))


def test_float_input_in_unit_range_is_accepted(goforward):
    words = recognize_phonemes(goforward / 32768.0)
    assert transcript_from_words(words) == "GO FORWARD TEN METERS"


def test_bad_mode_and_empty_audio():
    with pytest.raises(AvctError, match="mode"):
        recognize_phonemes(np.ones(16000), mode="phones")
    with pytest.raises(AvctError, match="too short"):
        recognize_phonemes(np.ones(100))


def test_normalize_transcript():
    assert normalize_transcript("Hello, WORLD!  It\u2019s 1,250 well-known 'quotes'.") == [
        "hello", "world", "it's", "one", "thousand", "two", "hundred", "fifty", "well", "known", "quotes"]
    assert number_words(2024) == ["two", "thousand", "twenty", "four"]
    assert number_words(3_000_017) == ["three", "million", "seventeen"]
    assert number_words(0) == ["zero"]


def test_unalignable_piece_falls_back_to_recognition(goforward, monkeypatch):
    """Safety net: if the phone pass is predicted to fail (zero-length <s>), plain and padded, the piece
    is recognised instead (words mode), with a warning."""
    monkeypatch.setattr(recognize, "_doomed", lambda d: d is recognize._DECODERS.get("align"))
    with pytest.warns(UserWarning, match="could not align"):
        words = recognize_phonemes(goforward, transcript="go forward ten meters")
    check_official_format(words, len(goforward))
    assert transcript_from_words(words) == "GO FORWARD TEN METERS"


@pytest.mark.parametrize("mode", ["words", "allphone"])
def test_a_process_recognises_an_audio_the_same_whatever_it_recognised_before(data, mode):
    """Pocketsphinx carries its running cepstral mean from one utterance to the next; the cached decoders
    start each call afresh, so a job in `avct batch` or the server gets the phonemes a fresh process gets
    (before the reset 5 of 25 frames of this 1 s clip changed)."""
    clip = load_audio(data / "audio" / "sadtalker_french_fayu_7s.wav").samples[:16000]
    other = load_audio(data / "audio" / "librivox_austen_0890_5s.wav").samples
    recognize._drop_decoder(mode)  # a decoder that has recognised nothing yet
    first = frame_phoneme_ids(recognize_phonemes(clip, mode=mode))
    recognize_phonemes(other, mode=mode)
    assert frame_phoneme_ids(recognize_phonemes(clip, mode=mode)) == first
