"""`avct pose` and `avct phonemes` as a user runs them."""
import numpy as np

from avct.audio.phonemes import frame_phoneme_ids, read_phoneme_json
from avct.audio.recognize import transcript_from_words
from avct.cli import main


def test_pose_command(data, capsys):
    assert main(["pose", str(data / "image" / "obama_frontal_facerec.jpg")]) == 0
    pose = np.array([float(v) for v in capsys.readouterr().out.strip().split(",")])
    assert pose.shape == (6,)
    assert np.all(np.abs(pose[:3]) < 0.4) and 150 < pose[5] < 400  # frontal head, plausible distance


def test_pose_command_without_face(data, capsys):
    assert main(["pose", str(data / "image" / "coffee_noface_skimage.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("avct: error: no face found in") and "frontal pose" in err and "\n" not in err


def test_phonemes_command_with_transcript(data, tmp_path, capsys):
    ref_dir = data / "phoneme_ref"
    wav = ref_dir / "ByronDorgan1.wav"
    reference = read_phoneme_json(wav.with_suffix(".json"))
    text = tmp_path / "transcript.txt"
    text.write_text(transcript_from_words(reference))
    out = tmp_path / "p.json"
    assert main(["phonemes", str(wav), "--transcript", str(text), "-o", str(out)]) == 0
    got, want = frame_phoneme_ids(read_phoneme_json(out)), frame_phoneme_ids(reference)
    n = min(len(got), len(want))
    assert abs(len(got) - len(want)) <= 2
    assert np.mean(np.array(got[:n]) == np.array(want[:n])) > 0.6
