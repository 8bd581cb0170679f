"""Phoneme table and frame alignment against the official parser (parity pack §2.3)."""
import json

import numpy as np
import pytest

from avct.audio.phonemes import (PHONEME_TO_ID, frame_phoneme_ids, read_phoneme_json, words_to_json,
                                 write_phoneme_json)
from avct.errors import AvctError
from support.parity_data import golden


def test_table_matches_official(parity):
    assert PHONEME_TO_ID == json.loads((parity / "phonemes" / "phoneme_table.json").read_text())


@pytest.mark.parametrize("json_name,key", [
    ("id01849_WopMMu6MChc_00050_000.json", "ph_ids"),
    ("edge_case.json", "edge_ph_ids"),
    ("edge_case_float.json", "edge_float_ph_ids"),  # int(116/100*25) == 28, not 29
])
def test_frame_alignment_matches_official(parity, json_name, key):
    ids = frame_phoneme_ids(read_phoneme_json(parity / "phonemes" / json_name))
    np.testing.assert_array_equal(ids, golden(parity, "phonemes.npz")[key])


def test_json_round_trip(parity, tmp_path):
    words = read_phoneme_json(parity / "phonemes" / "id01849_WopMMu6MChc_00050_000.json")
    write_phoneme_json(words, tmp_path / "p.json")
    assert read_phoneme_json(tmp_path / "p.json") == words
    assert json.loads((tmp_path / "p.json").read_text()) == words_to_json(words)


def test_bad_phoneme_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"word": "A", "phones": [{"ph": "AH0", "bg": 0, "ed": 8}]}]')
    with pytest.raises(AvctError, match="AH0"):
        frame_phoneme_ids(read_phoneme_json(bad))
    bad.write_text("{not json")
    with pytest.raises(AvctError, match="cannot read"):
        read_phoneme_json(bad)
    with pytest.raises(AvctError, match="not found"):
        read_phoneme_json(tmp_path / "missing.json")
