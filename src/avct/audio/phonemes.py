"""The 41-symbol phoneme table, the official phoneme JSON format and its 25 fps frame alignment.

JSON format (official): a list of words ``{"word": "HELLO" | "sil", "phones": [{"ph": "HH", "bg": 39,
"ed": 51}, ...]}`` with ``bg``/``ed`` in centiseconds (10 ms units).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import AvctError

# 39 stress-less CMU/ARPAbet phones + NSN (noise) + SIL (silence), alphabetical; ids 0..40.
PHONEMES: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH",
    "IY", "JH", "K", "L", "M", "N", "NG", "NSN", "OW", "OY", "P", "R", "S", "SH", "SIL", "T", "TH",
    "UH", "UW", "V", "W", "Y", "Z", "ZH",
)
PHONEME_TO_ID: dict[str, int] = {p: i for i, p in enumerate(PHONEMES)}
SIL_ID = PHONEME_TO_ID["SIL"]  # 31: also the padding id of the transformer windows


@dataclass(frozen=True)
class Phone:
    """One phone with begin/end in centiseconds (10 ms units)."""

    ph: str
    bg: int
    ed: int


@dataclass(frozen=True)
class Word:
    word: str
    phones: tuple[Phone, ...]


def phoneme_id(symbol: str) -> int:
    try:
        return PHONEME_TO_ID[symbol]
    except KeyError:
        raise AvctError(f"unknown phoneme symbol {symbol!r}; expected one of the 41 CMU symbols "
                        "without stress digits (e.g. AH, not AH0)") from None


def words_from_json(data: object) -> list[Word]:
    """Validate the parsed official JSON structure and turn it into ``Word`` objects (times from 0 to the
    longest speech avct accepts, :data:`avct.limits.LIMITS`)."""
    from ..limits import LIMITS

    if not isinstance(data, list):
        raise AvctError("phoneme JSON must be a list of words")
    words = []
    for w in data:
        try:
            phones = tuple(Phone(str(p["ph"]), int(p["bg"]), int(p["ed"])) for p in w["phones"])
            words.append(Word(str(w["word"]), phones))
        except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: int(Infinity)
            raise AvctError("phoneme JSON: every word needs 'word' and 'phones' "
                            "with 'ph', 'bg', 'ed'") from None
        last = int(LIMITS.max_audio_s * 100)
        for p in phones:
            if not (0 <= p.bg <= last and 0 <= p.ed <= last):
                raise AvctError(f"phoneme JSON: times must be between 0 and {last} centiseconds "
                                f"({LIMITS.max_audio_s:g} s), got bg={p.bg}, ed={p.ed}")
    return words


def read_phoneme_json(path: str | os.PathLike) -> list[Word]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AvctError(f"phoneme file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AvctError(f"cannot read phoneme file {path}: {e}") from None
    except RecursionError:
        raise AvctError(f"cannot read phoneme file {path}: nested too deeply") from None
    return words_from_json(data)


def words_to_json(words: list[Word]) -> list[dict]:
    return [{"word": w.word, "phones": [{"ph": p.ph, "bg": p.bg, "ed": p.ed} for p in w.phones]}
            for w in words]


def write_phoneme_json(words: list[Word], path: str | os.PathLike) -> None:
    """Write the official JSON atomically (temp file + rename)."""
    from ..io_utils import atomic_write_text

    atomic_write_text(Path(path), json.dumps(words_to_json(words), indent=1))


def frame_phoneme_ids(words: list[Word]) -> list[int]:
    """One phoneme id per 25 fps frame, exactly as the official parser does it.

    Frame count is ``int(last_ed / 100 * 25)`` evaluated in float64 (so ed = 116 gives 28, not 29);
    frame i takes the first phone, scanning forward, whose ``ed`` exceeds ``4 * i`` (the phone active
    at the frame's start time); once the phones run out the last one repeats.
    """
    phones = [p for w in words for p in w.phones]
    if not phones:
        raise AvctError("phoneme file holds no phones")
    num_frames = int(phones[-1].ed / 100 * 25)
    ids, k = [], 0
    for i in range(num_frames):
        while k < len(phones) - 1 and phones[k].ed <= 4 * i:
            k += 1
        ids.append(phoneme_id(phones[k].ph))
    return ids
