"""`avct generate` with nothing but a real photo and real speech in common formats: phonemes recognised
offline, the face cropped and its pose estimated, the audio decoded from mp3/flac/m4a. Official-size
networks from official-layout files (weights by the parity rule), `--precision auto`
(bf16 where the CPU has it natively) to keep the suite quick."""
import itertools

import numpy as np
import pytest

from avct.cli import main
from avct.video.reader import probe_video, read_video


@pytest.fixture(scope="module")
def flac_file(data, tmp_path_factory):
    """A flac made from a real wav (no flac ships in shared/data)."""
    import av

    src = data / "audio" / "retalking_audio1_5s.wav"
    out = tmp_path_factory.mktemp("flac") / "speech.flac"
    with av.open(str(src)) as inp, av.open(str(out), "w") as dst:
        stream = dst.add_stream("flac", rate=inp.streams.audio[0].rate)
        for frame in inp.decode(audio=0):
            frame.pts = None
            for packet in stream.encode(frame):
                dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)
    return out


@pytest.mark.parametrize("image,audio", [
    ("obama_frontal_facerec.jpg", "sonic_talk_female_english_10s.mp3"),
    ("woman_photo_s1_liveportrait.jpg", "FLAC"),
    ("man_closeup_liveportrait_d38.jpg", "dreamtalk_ack_english_17s.m4a"),
])
def test_generate_from_real_files(official_checkpoint_dir, data, flac_file, tmp_path, image, audio):
    audio_path = flac_file if audio == "FLAC" else data / "audio" / audio
    out = tmp_path / "out.mp4"
    code = main(["generate", "--image", str(data / "image" / image), "--audio", str(audio_path),
                 "--checkpoint", str(official_checkpoint_dir), "-o", str(out), "--precision", "auto", "-q"])
    assert code == 0 and out.is_file()
    info = probe_video(out)
    from avct.face.image import read_image

    h, w = read_image(data / "image" / image).shape[:2]     # the whole photo (these are below --max-size)
    assert info.codec == "h264" and info.audio_codec == "aac" and (info.width, info.height) == (w + w % 2, h + h % 2)
    assert info.audio_duration is not None
    # the video covers the audio to within one 40 ms frame
    assert abs(info.video_duration - info.audio_duration) <= 0.04 + 1e-6, (info.video_duration, info.audio_duration)
    frames = list(itertools.islice(read_video(out), 3))
    assert len(frames) == 3 and np.std(frames[0]) > 5  # a real picture, not a blank frame
