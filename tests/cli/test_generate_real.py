"""`avct generate` with nothing but a real photo and real speech in common formats: phonemes recognised
offline, the face cropped and its pose estimated, the audio decoded from mp3/flac/m4a. Once with
official-size networks from official-layout files (weights by the parity rule), else the bundled
weights a new user gets; `--precision auto` (bf16 where the CPU has it natively) to keep the suite quick."""
import itertools

import numpy as np
import pytest

from avct.cli import main
from avct.video.reader import probe_video, read_video
from support.media_files import first_seconds, write_flac

SECONDS = 2.5  # of each speech file: every container and codec is decoded the same, and the suite stays quick


@pytest.fixture(scope="module")
def flac_file(data, tmp_path_factory):
    """A flac made from a real wav's first SECONDS (no flac ships in shared/data)."""
    return write_flac(data / "audio" / "retalking_audio1_5s.wav", tmp_path_factory.mktemp("flac") / "speech.flac",
                      seconds=SECONDS)


@pytest.mark.parametrize("image,audio,weights", [
    ("obama_frontal_facerec.jpg", "sonic_talk_female_english_10s.mp3", "official"),
    ("woman_photo_s1_liveportrait.jpg", "FLAC", "bundled"),
    ("man_closeup_liveportrait_d38.jpg", "dreamtalk_ack_english_17s.m4a", "bundled"),
])
def test_generate_from_real_files(official_checkpoint_dir, data, flac_file, tmp_path, image, audio, weights):
    audio_path = flac_file if audio == "FLAC" else first_seconds(data / "audio" / audio, tmp_path / audio, SECONDS)
    out = tmp_path / "out.mp4"
    checkpoint = ["--checkpoint", str(official_checkpoint_dir)] if weights == "official" else []  # else the default
    code = main(["generate", "--image", str(data / "image" / image), "--audio", str(audio_path), *checkpoint,
                 "-o", str(out), "--precision", "auto", "-q"])
    assert code == 0 and out.is_file()
    info = probe_video(out)
    from avct.face.image import read_image

    h, w = read_image(data / "image" / image).shape[:2]     # the whole photo (these are below --max-size)
    assert info.codec == "h264" and info.audio_codec == "aac" and (info.width, info.height) == (w + w % 2, h + h % 2)
    assert info.audio_duration is not None and abs(info.audio_duration - SECONDS) < 0.2  # the cut, not the whole file
    # the video covers the audio to within one 40 ms frame, plus what the feature rule leaves at the end:
    # 25 ms windows every 10 ms give 1 + ceil((n - 400) / 160) rows, 4 rows a frame (the official rule)
    assert abs(info.video_duration - info.audio_duration) <= 0.04 + 0.015 + 1e-6, (info.video_duration, info.audio_duration)
    frames = list(itertools.islice(read_video(out), 3))
    assert len(frames) == 3 and np.std(frames[0]) > 5  # a real picture, not a blank frame
