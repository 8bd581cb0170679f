"""Offline phonemes in the official JSON format, with pocketsphinx 5 and its bundled en-us models.

Why pocketsphinx: it is the only offline recogniser with a pip wheel that ships an acoustic model, a CMU
dictionary and phone-level alignment; the official JSONs came from an unnamed cloud ASR (OFFICIAL.md A.3).

Three ways to get phones (all give the same output format):

* ``mode="words"`` (no transcript, the default): n-gram word decoding, then a phone-level alignment of
  the hypothesis. Words are often wrong, but the phones are real pronunciations of real words.
* ``mode="allphone"`` (no transcript): phone-loop decoding with the phone n-gram; no words. Faster, less
  accurate (see ``benchmarks/phonemes.py``).
* ``transcript=...``: forced alignment of the given text. By far the most accurate; use it when the text
  is known.

Pocketsphinx details that shape this module:

* The phone-level pass (``set_alignment``) keeps a frames × HMM-states table (a 10-minute file needed
  8.9 GB) with 16-bit state ids, so audio is cut into pieces of at most ``MAX_CHUNK_S``, each decoded on
  its own (memory ~300 MB, time linear). Without a transcript the cuts go at the quietest point near the
  limit; with one, the whole text is first word-aligned (cheap) and cut between words at the longest pause.
* The phone pass keeps every word inside the span the first pass gave it. With the default
  ``bestpath`` the segmentation comes from the lattice and sometimes starts with a zero-length ``<s>``
  that no 3-state HMM fits: the phone pass then fails on about half the forced-alignment pieces, and
  the decoder is unusable afterwards (``hyp()`` even segfaults). Forced alignment therefore uses
  ``bestpath=False`` (Viterbi backtrace: no failure on the reference pieces). As a safety net that
  pattern is checked before every phone pass; if present (or if the pass fails anyway) the decoder is
  dropped and the piece retried once with 0.3 s of faint noise on both ends, then recognised instead.
* Forced alignment with the default beams loses the path on some clips; wider beams cost little.
* Reported times are frame starts of a 25.6 ms analysis window; the perceived boundary is later. A shift
  of ``TIME_SHIFT_CS`` (measured best on the reference set) is added to every boundary.

Output conventions (official format, see ``phonemes.py``): words upper-case, alternate-pronunciation
markers ``(2)`` removed; ``<s>``, ``</s>``, ``<sil>`` and fillers become word ``sil`` with one phone
``SIL``; phones stress-less; ``bg``/``ed`` in centiseconds, contiguous, from 0 to the audio end
(``len(samples) // 160``). Noise (``+NSN+``, ``+SPN+``, other fillers) becomes ``SIL``: the table has an
``NSN`` entry, but the official aligner never emitted it (0 occurrences in the 13 shipped and 10
reference JSONs), so its embedding is untrained in practice and ``SIL`` keeps the model in distribution.
"""
from __future__ import annotations

import re
import threading
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable, Literal

import numpy as np

from ..errors import AvctError
from .phonemes import PHONEME_TO_ID, Phone, Word
from ..media import SAMPLE_RATE

Mode = Literal["words", "allphone"]
DEFAULT_MODE: Mode = "words"  # better frame agreement than allphone (benchmarks/phonemes.py)
HOP = SAMPLE_RATE // 100  # samples per centisecond = per pocketsphinx frame
MAX_CHUNK_S = 30.0  # longest piece given to the phone-level pass
CUT_SEARCH_S = 8.0  # how far before the limit to look for a place to cut
TIME_SHIFT_CS = 2  # added to every boundary (analysis-window centre + measured bias)
PAD_CS = 30  # faint-noise padding for the retry of a failed phone pass
# Forced alignment: default beams lose the path on some clips; bestpath=False takes the segmentation from
# the Viterbi backtrace instead of the lattice, whose zero-length <s> made the phone pass fail on half
# the pieces (never with the backtrace, on the 14 reference pieces).
ALIGN_CONFIG = {"beam": 1e-80, "pbeam": 1e-80, "wbeam": 1e-60, "bestpath": False, "silprob": 0.1}
# Words mode: at most 3000 active HMMs per frame (default 30000) halves the CPU time at no loss of frame
# agreement; fewer HMMs, narrower beams or ds=2 lose agreement (benchmarks/phonemes.py; figures in
# docs/frontend.md, "Phonemes: the recogniser's settings").
WORDS_CONFIG: dict = {"maxhmmpf": 3000}
ALLPHONE_CONFIG: dict = {"lw": 1.0}  # measured: 50% vs 42% frame agreement at the default 6.5
SIL_WORD, SIL_PHONE = "sil", "SIL"
ALLPHONE_WORD = "UNK"  # allphone mode has no words: each run of phones between silences is one "UNK"
SPOKEN_NOISE = "+SPN+"  # pronunciation given to out-of-vocabulary transcript words

_ALT_PRON = re.compile(r"\(\d+\)$")
_PHONES = frozenset(PHONEME_TO_ID) - {"NSN"}

Span = tuple[str, int, int]  # (phone, start_cs, end_cs exclusive), absolute time
Report = Callable[[int], None]  # told the absolute sample up to which the audio is done


@dataclass(frozen=True)
class _Seg:
    """One recognised word (pocketsphinx spelling) with its phones."""

    word: str
    phones: tuple[Span, ...]


class _PhonePassFailed(Exception):
    """The phone-level pass failed even after the padded retry."""


def recognize_phonemes(samples16k: np.ndarray, transcript: str | None = None,
                       mode: Mode = DEFAULT_MODE, *,
                       on_progress: Callable[[float], None] | None = None) -> list[Word]:
    """Phones of 16 kHz mono audio (int16 scale, as ``load_audio`` returns) in the official format.

    With ``transcript`` the text is force-aligned (``mode`` is then ignored); otherwise ``mode`` picks
    word decoding + alignment ("words") or phone-loop decoding ("allphone"). ``on_progress(fraction)``
    is called after every piece (at most MAX_CHUNK_S of audio) with the share of the audio done,
    increasing, the last call 1.0.
    """
    if mode not in ("words", "allphone"):
        raise AvctError(f"unknown phoneme recognition mode {mode!r}; use 'words' or 'allphone'")
    pcm = _to_pcm(samples16k)
    end_cs = len(pcm) // HOP
    if end_cs == 0:
        raise AvctError("audio is too short for phoneme recognition (less than 10 ms)")
    report = _fraction_reporter(on_progress, len(pcm))
    with _LOCK:  # pocketsphinx decoders are not thread-safe; they are cached per process
        _fresh_features()
        if transcript is not None:
            segs = _align_transcript(pcm, transcript, report)
        elif mode == "words":
            segs = _decode_words(pcm, 0, report)
        else:
            segs = _decode_allphone(pcm, 0, report)
    words = _to_official(segs, end_cs)
    if on_progress is not None:
        on_progress(1.0)
    return words


def _fraction_reporter(on_progress: Callable[[float], None] | None, n_samples: int) -> Report:
    """A Report that passes on fractions below 1, each larger than the last (1.0 is sent at the end)."""
    last = [0.0]

    def report(sample: int) -> None:
        fraction = sample / n_samples
        if on_progress is not None and last[0] < fraction < 1.0:
            last[0] = fraction
            on_progress(fraction)
    return report


def _no_report(sample: int) -> None:
    pass


def transcript_from_words(words: Iterable[Word]) -> str:
    """The spoken text of a word list (silences and allphone placeholders dropped)."""
    return " ".join(w.word for w in words if w.word not in (SIL_WORD, ALLPHONE_WORD))


# ---------------------------------------------------------------------------------------------------
# audio preparation and chunking


def _to_pcm(samples: np.ndarray) -> np.ndarray:
    """int16 PCM for pocketsphinx; float audio in ±1 is scaled up (pocketsphinx expects the int16 scale)."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    if x.size and np.max(np.abs(x)) <= 1.0:
        x = x * 32767.0
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def chunk_bounds(pcm: np.ndarray, max_s: float | None = None, search_s: float | None = None
                 ) -> list[tuple[int, int]]:
    """Sample ranges of at most ``max_s`` (default MAX_CHUNK_S) each, cut at the quietest 10 ms within
    ``search_s`` (default CUT_SEARCH_S) before each limit.

    Cuts land on centisecond boundaries so chunk times add up exactly; energy is smoothed over 100 ms so
    that a cut falls inside a pause rather than inside a stop closure.
    """
    max_s = MAX_CHUNK_S if max_s is None else max_s
    search_s = CUT_SEARCH_S if search_s is None else search_s
    n_cs = len(pcm) // HOP
    max_cs, search_cs = int(max_s * 100), int(search_s * 100)
    if n_cs <= max_cs:
        return [(0, len(pcm))]
    frames = pcm[: n_cs * HOP].astype(np.float64).reshape(n_cs, HOP)
    energy = np.convolve((frames ** 2).mean(axis=1), np.ones(10) / 10, mode="same")
    cuts = [0]
    while n_cs - cuts[-1] > max_cs:
        lo = cuts[-1] + max_cs - search_cs
        cuts.append(lo + int(np.argmin(energy[lo: cuts[-1] + max_cs])))
    return [(a * HOP, b * HOP) for a, b in zip(cuts, cuts[1:])] + [(cuts[-1] * HOP, len(pcm))]


def _padded(pcm: np.ndarray, pad_cs: int) -> np.ndarray:
    """Faint deterministic noise (about -80 dBFS) on both ends; digital zeros would break the MFCCs."""
    noise = (np.random.default_rng(0).standard_normal(pad_cs * HOP) * 3).astype(np.int16)
    return np.concatenate([noise, pcm, noise])


# ---------------------------------------------------------------------------------------------------
# decoders (cached per process; a decoder whose phone pass failed is dropped, see the module doc)

_LOCK = threading.RLock()
_DECODERS: dict[str, object] = {}


def _decoder(kind: str):
    """The cached decoder of a kind: "words" (n-gram), "align" (wide beams, no LM), "allphone"."""
    if kind not in _DECODERS:
        import pocketsphinx as ps

        if kind == "allphone":
            _DECODERS[kind] = ps.Decoder(lm=None, loglevel="FATAL", **ALLPHONE_CONFIG,
                                         allphone=ps.get_model_path("en-us/en-us-phone.lm.bin"))
        elif kind == "align":
            _DECODERS[kind] = ps.Decoder(lm=None, loglevel="FATAL", **ALIGN_CONFIG)
        else:
            _DECODERS[kind] = ps.Decoder(loglevel="FATAL", **WORDS_CONFIG)
    return _DECODERS[kind]


def _fresh_features() -> None:
    """Reset the cached decoders' feature state (the running cepstral mean above all), which pocketsphinx
    carries from one utterance to the next even with batch CMN: without this a process' phonemes for an
    audio depended on what it had recognised before (5 of 25 frames of a 1 s clip changed after another
    clip), so ``avct batch`` and the server gave a job different phonemes than a fresh ``avct generate``."""
    for decoder in _DECODERS.values():
        decoder.reinit_feat()


def _drop_decoder(kind: str) -> None:
    _DECODERS.pop(kind, None)


def _run(decoder, pcm: np.ndarray) -> None:
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()


def _two_pass(kind: str, pcm: np.ndarray, offset_cs: int, text: str | None = None) -> list[_Seg]:
    """First pass (n-gram decoding, or word alignment of ``text``), then the phone-level pass.

    Returns [] when the first pass finds no words (silence). Raises _PhonePassFailed when both the plain
    and the padded attempt fail.
    """
    for pad in (0, PAD_CS):
        audio = _padded(pcm, pad) if pad else pcm
        decoder = _decoder(kind)
        try:
            if text is None:
                decoder.activate_search()  # back to the n-gram after an earlier phone pass
            else:
                _ensure_words(decoder, text.split())
                decoder.set_align_text(text)
            _run(decoder, audio)
            hyp = decoder.hyp()
            if hyp is None or (text is None and not hyp.hypstr.strip()):
                if text is None:
                    return []
                raise RuntimeError("no alignment path")
            if _doomed(decoder):
                continue  # the phone pass would fail (and break the decoder): retry padded
            decoder.set_alignment()
            _run(decoder, audio)
            return _clip(_collect(decoder, offset_cs - pad), offset_cs, offset_cs + len(pcm) // HOP)
        except RuntimeError:
            _drop_decoder(kind)  # never touch a decoder after a failed pass
    raise _PhonePassFailed


def _doomed(decoder) -> bool:
    """A zero-length ``<s>`` overlapping the next segment: no 3-state HMM fits, the phone pass fails."""
    first_two = []
    for seg in decoder.seg():
        first_two.append((seg.word, seg.start_frame, seg.end_frame))
        if len(first_two) == 2:
            break
    return (len(first_two) == 2 and first_two[0][0] == "<s>"
            and first_two[1][1] <= first_two[0][2])


def _collect(decoder, offset_cs: int) -> list[_Seg]:
    segs = []
    for word in decoder.get_alignment():
        phones = tuple((p.name, offset_cs + p.start, offset_cs + p.start + p.duration) for p in word)
        segs.append(_Seg(word.name, phones))
    return segs


def _clip(segs: list[_Seg], lo: int, hi: int) -> list[_Seg]:
    """Keep phones inside [lo, hi): padding must not spill into the neighbouring chunks."""
    out = []
    for seg in segs:
        phones = tuple((ph, max(bg, lo), min(ed, hi)) for ph, bg, ed in seg.phones
                       if min(ed, hi) > max(bg, lo))
        if phones:
            out.append(_Seg(seg.word, phones))
    return out


def _silence(start_cs: int, end_cs: int) -> list[_Seg]:
    return [_Seg(SIL_WORD, ((SIL_PHONE, start_cs, end_cs),))] if end_cs > start_cs else []


def _decode_words(pcm: np.ndarray, offset_cs: int = 0, report: Report = _no_report) -> list[_Seg]:
    """Words mode, chunk by chunk; a chunk whose phone pass fails falls back to allphone decoding."""
    segs: list[_Seg] = []
    for a, b in chunk_bounds(pcm):
        start = offset_cs + a // HOP
        try:
            segs += _two_pass("words", pcm[a:b], start) or _silence(start, offset_cs + b // HOP)
        except _PhonePassFailed:
            segs += _decode_allphone(pcm[a:b], start)
        report(offset_cs * HOP + b)
    return segs


def _decode_allphone(pcm: np.ndarray, offset_cs: int = 0, report: Report = _no_report) -> list[_Seg]:
    """Phone-loop decoding; runs of speech phones between silences are grouped into placeholder words."""
    segs: list[_Seg] = []
    for a, b in chunk_bounds(pcm):
        decoder = _decoder("allphone")
        _run(decoder, pcm[a:b])
        start = offset_cs + a // HOP
        for s in decoder.seg():  # end_frame is inclusive
            span = (s.word, start + s.start_frame, start + s.end_frame + 1)
            if _normalize_phone(s.word) == SIL_PHONE:
                segs.append(_Seg(SIL_WORD, (span,)))
            elif segs and segs[-1].word == ALLPHONE_WORD:
                segs[-1] = _Seg(ALLPHONE_WORD, segs[-1].phones + (span,))
            else:
                segs.append(_Seg(ALLPHONE_WORD, (span,)))
        report(offset_cs * HOP + b)
    return segs


# ---------------------------------------------------------------------------------------------------
# forced alignment


def _align_transcript(pcm: np.ndarray, transcript: str, report: Report = _no_report) -> list[_Seg]:
    """Force-align ``transcript`` piece by piece; pieces that cannot be aligned are recognised instead."""
    words = prepare_transcript(transcript)
    if not words:
        warnings.warn("the transcript has no words; recognising the audio without it", stacklevel=3)
        return _decode_words(pcm, 0, report)
    pieces = _split_transcript(pcm, words)
    if pieces is None:
        warnings.warn("the transcript could not be aligned to the audio (does it match?); "
                      "recognising the audio without it", stacklevel=3)
        return _decode_words(pcm, 0, report)
    segs: list[_Seg] = []
    for (a, b), text in pieces:
        start, stop = a // HOP, b // HOP
        if not text:
            segs += _silence(start, stop)
        else:
            try:
                segs += _two_pass("align", pcm[a:b], start, text)
            except _PhonePassFailed:
                warnings.warn(f"could not align the transcript between {a / SAMPLE_RATE:.1f} and "
                              f"{b / SAMPLE_RATE:.1f} s; recognising that part instead", stacklevel=3)
                segs += _decode_words(pcm[a:b], start, report)
        report(b)
    return segs


def _split_transcript(pcm: np.ndarray, words: list[str]) -> list[tuple[tuple[int, int], str]] | None:
    """Pair audio pieces with their words: one piece if short, else word-align all and cut between words.

    The whole-file word-level pass has no phone/state table, so its memory stays small. None if the
    text cannot be aligned at all.
    """
    if len(pcm) // HOP <= MAX_CHUNK_S * 100:
        return [((0, len(pcm)), " ".join(words))]
    decoder = _decoder("align")
    try:
        _ensure_words(decoder, words)
        decoder.set_align_text(" ".join(words))
        _run(decoder, pcm)
        if decoder.hyp() is None:
            return None
        spans = [(s.word, s.start_frame, s.end_frame + 1) for s in decoder.seg()]
    except RuntimeError:
        _drop_decoder("align")
        return None
    real = [(w, bg, ed) for w, bg, ed in spans if _is_word(w)]
    if len(real) != len(words):
        return None
    return _cut_between_words(real, len(pcm))


def _cut_between_words(real: list[tuple[str, int, int]], n_samples: int
                       ) -> list[tuple[tuple[int, int], str]]:
    """Cut after the word with the longest following pause near each limit (pieces <= MAX_CHUNK_S)."""
    max_cs, search_cs = int(MAX_CHUNK_S * 100), int(CUT_SEARCH_S * 100)
    # (cut time = middle of the pause, pause length, index of the last word before the cut)
    gaps = [((real[k][2] + real[k + 1][1]) // 2, real[k + 1][1] - real[k][2], k)
            for k in range(len(real) - 1)]
    pieces, start_cs, first = [], 0, 0
    while n_samples // HOP - start_cs > max_cs:
        limit = start_cs + max_cs
        window = [g for g in gaps if g[2] >= first and limit - search_cs <= g[0] <= limit]
        window = window or [g for g in gaps if g[2] >= first and start_cs < g[0] <= limit]
        if not window:
            break  # no word boundary before the limit: leave the rest in one piece
        cut_cs, _, k = max(window, key=lambda g: (g[1], g[0]))
        pieces.append(((start_cs * HOP, cut_cs * HOP), _text(real[first:k + 1])))
        start_cs, first = cut_cs, k + 1
    pieces.append(((start_cs * HOP, n_samples), _text(real[first:])))
    return pieces


def _text(spans: list[tuple[str, int, int]]) -> str:
    return " ".join(_ALT_PRON.sub("", w) for w, _, _ in spans)


def _is_word(name: str) -> bool:
    return not (name.startswith("<") or name.startswith("[") or name.startswith("+"))


# ---------------------------------------------------------------------------------------------------
# transcript normalisation

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> list[str]:
    """English words for a non-negative integer below 10**12 (the dictionary has no digits)."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + (number_words(n % 10) if n % 10 else [])
    for size, name in ((10 ** 9, "billion"), (10 ** 6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            return number_words(n // size) + [name] + (number_words(n % size) if n % size else [])
    raise AssertionError("unreachable")


def normalize_transcript(text: str) -> list[str]:
    """Lower-case tokens: curly quotes unified, punctuation dropped, numbers spelled, hyphens split."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 1,000 → 1000
    tokens: list[str] = []
    for raw in re.findall(r"[a-z0-9'\-]+", text):
        for part in raw.split("-"):
            part = part.strip("'")
            if part.isdigit():
                tokens += number_words(int(part)) if len(part) <= 12 else [_ONES[int(c)] for c in part]
            elif part:
                tokens.append(part)
    return tokens


def prepare_transcript(transcript: str) -> list[str]:
    """Normalised words; out-of-vocabulary ones are kept (aligned as unknown speech) with a warning.

    Why keep them: dropped, their audio would be forced onto the neighbouring words and shift every
    phone around them; as spoken noise (``+SPN+``) the aligner absorbs them. They come out with phone SIL.
    """
    words = normalize_transcript(transcript)
    decoder = _decoder("align")
    oov = sorted({w for w in words if decoder.lookup_word(w) in (None, SPOKEN_NOISE)})
    if oov:
        warnings.warn(f"{len(oov)} transcript word(s) not in the pronunciation dictionary are aligned "
                      f"as unknown speech (phone SIL): {', '.join(oov[:10])}", stacklevel=4)
    return words


def _ensure_words(decoder, words: list[str]) -> None:
    """Give every unknown word the spoken-noise pronunciation (again after a decoder was replaced)."""
    for w in set(words):
        if decoder.lookup_word(w) is None:
            decoder.add_word(w, SPOKEN_NOISE, update=True)


# ---------------------------------------------------------------------------------------------------
# conversion to the official format


def _normalize_word(name: str) -> str:
    if name == SIL_WORD or not _is_word(name):
        return SIL_WORD
    return _ALT_PRON.sub("", name).upper()


def _normalize_phone(name: str) -> str:
    """Stress digits removed; silence, fillers and anything outside the table become SIL."""
    name = name.rstrip("012").upper()
    return name if name in _PHONES else SIL_PHONE


def _to_official(segs: list[_Seg], end_cs: int) -> list[Word]:
    """Normalise names, shift, make phones contiguous from 0 to ``end_cs`` (gaps → silence), merge sils."""
    tokens: list[tuple[str, list[Span]]] = []
    cursor = 0
    for seg in segs:
        word = _normalize_word(seg.word)
        kept: list[Span] = []
        for ph, bg, ed in seg.phones:
            ph = SIL_PHONE if word == SIL_WORD else _normalize_phone(ph)
            bg = max(bg + TIME_SHIFT_CS if bg > 0 else 0, cursor)
            ed = min(ed + TIME_SHIFT_CS, end_cs)
            if ed <= bg:
                continue
            if bg > cursor:  # a gap: stretch the previous phone of this word, or insert a silence
                if kept:
                    kept[-1] = (kept[-1][0], kept[-1][1], bg)
                else:
                    tokens.append((SIL_WORD, [(SIL_PHONE, cursor, bg)]))
            kept.append((ph, bg, ed))
            cursor = ed
        if kept:
            tokens.append((word, kept))
    if cursor < end_cs:
        tokens.append((SIL_WORD, [(SIL_PHONE, cursor, end_cs)]))
    return _merge_silences(tokens)


def _merge_silences(tokens: list[tuple[str, list[Span]]]) -> list[Word]:
    """Consecutive silences become one ``sil`` word with one ``SIL`` phone, as in the official files."""
    words: list[Word] = []
    for word, phones in tokens:
        if word != SIL_WORD:
            words.append(Word(word, tuple(Phone(ph, bg, ed) for ph, bg, ed in phones)))
            continue
        bg = phones[0][1]
        if words and words[-1].word == SIL_WORD:
            bg = words.pop().phones[0].bg
        words.append(Word(SIL_WORD, (Phone(SIL_PHONE, bg, phones[-1][2]),)))
    return words
