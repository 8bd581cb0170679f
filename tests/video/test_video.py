"""avct.video.writer: H.264 + AAC mp4 writing (streamed, atomic, audio never cut) and reading/probing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from avct.video import writer as video  # noqa: E402
from avct.errors import AvctError  # noqa: E402
from avct.video.writer import VideoWriter, write_video  # noqa: E402
from avct.video.reader import probe_video, read_video  # noqa: E402
from support.media_files import write_flac  # noqa: E402

FPS = 25.0
ONE_FRAME = 1 / FPS
SIZE = 64


@pytest.fixture(scope="session")
def audio_dir(data) -> Path:
    return data / "audio"


@pytest.fixture(scope="session")
def flac_audio(audio_dir, tmp_path_factory) -> Path:
    """A FLAC made from one of the shared WAVs with PyAV (no FLAC file is shared)."""
    return write_flac(audio_dir / "librivox_austen_0890_5s.wav", tmp_path_factory.mktemp("flac") / "speech.flac",
                      layout="mono")


def decoded_audio(path: Path) -> tuple[np.ndarray, int]:
    """All samples of the first audio track as mono float, and the sample rate."""
    with av.open(str(path)) as c:
        rate = c.streams.audio[0].rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks = [f.to_ndarray().reshape(-1) for fr in c.decode(audio=0) for f in resampler.resample(fr)]
        chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(chunks), rate


def audio_seconds(path: Path) -> float:
    samples, rate = decoded_audio(path)
    return len(samples) / rate


def smooth_frame(i: int, h: int = SIZE, w: int = SIZE) -> np.ndarray:
    """Slowly moving colour gradients: what a codec at CRF 18 should reproduce closely."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 128 + 100 * np.sin(2 * np.pi * (xx / w + i / 25))
    g = 128 + 100 * np.cos(2 * np.pi * (yy / h - i / 50))
    b = 128 + 60 * np.sin(2 * np.pi * (xx + yy) / (2 * w) + i / 10)
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---- writing with audio --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dreamtalk_spanish1_5s.wav", "sonic_talk_female_english_10s.mp3",
                                  "dreamtalk_ack_english_17s.m4a", "flac"])
def test_mp4_matches_audio(name, audio_dir, flac_audio, tmp_path):
    audio = flac_audio if name == "flac" else audio_dir / name
    seconds = audio_seconds(audio)
    n = round(FPS * seconds)
    out = tmp_path / "out.mp4"
    frame = np.full((SIZE, SIZE, 3), 100, np.uint8)
    assert write_video(out, (frame for _ in range(n)), fps=FPS, audio_path=audio) == out

    info = probe_video(out)
    assert (info.width, info.height, info.fps, info.frame_count) == (SIZE, SIZE, FPS, n)
    assert (info.codec, info.pix_fmt) == ("h264", "yuv420p")
    assert info.has_audio and info.audio_codec == "aac"
    assert abs(info.video_duration - n / FPS) < 1e-6
    # The audio is neither cut nor padded beyond a frame, and the file lasts as long as the audio.
    assert abs(info.audio_duration - seconds) <= ONE_FRAME
    assert abs(info.duration - seconds) <= ONE_FRAME
    assert abs(audio_seconds(out) - seconds) <= ONE_FRAME
    assert listing(tmp_path) == ["out.mp4"]


def test_audio_is_the_original(audio_dir, tmp_path):
    """The AAC track decodes back to the input speech, time-aligned (encoder delay compensated)."""
    audio = audio_dir / "dreamtalk_spanish1_5s.wav"
    ref, rate = decoded_audio(audio)
    out = tmp_path / "out.mp4"
    write_video(out, (np.zeros((SIZE, SIZE, 3), np.uint8) for _ in range(round(FPS * len(ref) / rate))),
                audio_path=audio)
    got, got_rate = decoded_audio(out)
    assert got_rate == rate
    n = min(len(ref), len(got))
    assert np.corrcoef(ref[:n], got[:n])[0, 1] > 0.95


def test_audio_from_a_video_file(audio_dir, tmp_path):
    """A video's audio track works as the audio source, like any audio file."""
    first = tmp_path / "first.mp4"
    audio = audio_dir / "librivox_austen_0890_5s.wav"
    seconds = audio_seconds(audio)
    n = round(FPS * seconds)
    write_video(first, (np.zeros((SIZE, SIZE, 3), np.uint8) for _ in range(n)), audio_path=audio)
    second = tmp_path / "second.mp4"
    write_video(second, (np.zeros((32, 32, 3), np.uint8) for _ in range(n)), audio_path=first)
    info = probe_video(second)
    assert info.audio_codec == "aac" and abs(info.audio_duration - seconds) <= ONE_FRAME


def test_ffmpeg_fallback_without_pyav_aac(audio_dir, tmp_path, monkeypatch):
    """Without PyAV's AAC encoder the bundled ffmpeg binary muxes the audio, with the same result."""
    pytest.importorskip("imageio_ffmpeg")
    monkeypatch.setattr(video, "pyav_can_encode_aac", lambda: False)
    calls = []
    real_run = video.subprocess.run
    monkeypatch.setattr(video.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or real_run(cmd, **kw))
    audio = audio_dir / "librivox_austen_0890_5s.wav"
    seconds = audio_seconds(audio)
    n = round(FPS * seconds)
    out = tmp_path / "out.mp4"
    write_video(out, (smooth_frame(i) for i in range(n)), audio_path=audio)
    info = probe_video(out)
    assert info.frame_count == n and info.codec == "h264" and info.audio_codec == "aac"
    assert abs(info.duration - seconds) <= ONE_FRAME
    assert len(calls) == 1 and "aac" in calls[0]
    assert listing(tmp_path) == ["out.mp4"]


# ---- frames ----------------------------------------------------------------------------------------


def test_frames_round_trip_and_png_dump(tmp_path):
    frames = [smooth_frame(i) for i in range(30)]
    out, pngs = tmp_path / "v.mp4", tmp_path / "frames"
    write_video(out, iter(frames), fps=FPS, frames_dir=pngs)

    info = probe_video(out)
    assert not info.has_audio and info.frame_count == 30 and info.fps == FPS
    back = list(read_video(out))
    assert len(back) == 30
    assert all(b.shape == (SIZE, SIZE, 3) and b.dtype == np.uint8 for b in back)
    assert min(psnr(a, b) for a, b in zip(frames, back)) > 35

    from PIL import Image

    assert listing(pngs) == [f"{i:06d}.png" for i in range(30)]
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(np.asarray(Image.open(pngs / f"{i:06d}.png")), frame)
    assert listing(tmp_path) == ["frames", "v.mp4"]


def test_odd_frame_size_is_padded(tmp_path):
    """yuv420p needs even sizes: 45x63 frames become a 46x64 video; the PNGs keep 45x63."""
    frames = [smooth_frame(i, 45, 63) for i in range(5)]
    out, pngs = tmp_path / "v.mp4", tmp_path / "frames"
    write_video(out, frames, frames_dir=pngs)
    info = probe_video(out)
    assert (info.height, info.width) == (46, 64)
    back = list(read_video(out))
    assert psnr(back[0][:45, :63], frames[0]) > 35

    from PIL import Image

    np.testing.assert_array_equal(np.asarray(Image.open(pngs / "000004.png")), frames[4])


def test_rejects_bad_frames(tmp_path):
    out = tmp_path / "v.mp4"
    with pytest.raises(ValueError, match="uint8"):
        write_video(out, [np.zeros((SIZE, SIZE, 3), np.float32)])
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        write_video(out, [np.zeros((SIZE, SIZE), np.uint8)])
    with pytest.raises(ValueError, match="32x32"):
        write_video(out, [np.zeros((SIZE, SIZE, 3), np.uint8), np.zeros((32, 32, 3), np.uint8)])
    with pytest.raises(AvctError, match="no video frames"):
        write_video(out, [])
    assert listing(tmp_path) == []


# ---- atomicity -------------------------------------------------------------------------------------


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failure_midway_leaves_nothing(error, audio_dir, tmp_path):
    """An exception or Ctrl-C while writing leaves neither a partial mp4, PNGs nor temp files,
    and an earlier output at the same paths stays as it was."""
    out, pngs = tmp_path / "out.mp4", tmp_path / "frames"
    with pytest.raises(error):
        with VideoWriter(out, audio_path=audio_dir / "dreamtalk_spanish1_5s.wav", frames_dir=pngs) as w:
            for i in range(20):
                w.write(smooth_frame(i))
            raise error("stop")
    assert listing(tmp_path) == []

    out.write_bytes(b"previous video")
    pngs.mkdir()
    (pngs / "000000.png").write_bytes(b"previous frame")

    def frames():
        yield from (smooth_frame(i) for i in range(10))
        raise error("generator died")

    with pytest.raises(error):
        write_video(out, frames(), audio_path=audio_dir / "dreamtalk_spanish1_5s.wav", frames_dir=pngs)
    assert listing(tmp_path) == ["frames", "out.mp4"]
    assert out.read_bytes() == b"previous video"
    assert listing(pngs) == ["000000.png"]


def test_previous_frame_dump_is_replaced(tmp_path):
    pngs = tmp_path / "frames"
    write_video(tmp_path / "a.mp4", [smooth_frame(i) for i in range(6)], frames_dir=pngs)
    write_video(tmp_path / "a.mp4", [smooth_frame(i) for i in range(3)], frames_dir=pngs)
    assert listing(pngs) == ["000000.png", "000001.png", "000002.png"]
    assert listing(tmp_path) == ["a.mp4", "frames"]


def test_refuses_frames_dir_with_other_files(tmp_path):
    pngs = tmp_path / "frames"
    pngs.mkdir()
    (pngs / "notes.txt").write_text("mine")
    with pytest.raises(AvctError, match="other files"):
        VideoWriter(tmp_path / "a.mp4", frames_dir=pngs)
    assert listing(tmp_path) == ["frames"] and listing(pngs) == ["notes.txt"]


# ---- bad inputs ------------------------------------------------------------------------------------


def test_unreadable_audio_is_a_user_error(audio_dir, tmp_path):
    silent = tmp_path / "inputs" / "silent.mp4"
    write_video(silent, [np.zeros((SIZE, SIZE, 3), np.uint8)] * 3)
    text = tmp_path / "inputs" / "text.wav"
    text.write_text("this is not audio\n")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    cases = {
        tmp_path / "missing.wav": "not found",
        audio_dir / "edge_bad_fmtchunk.wav": "cannot read audio",
        text: "cannot read audio",
        audio_dir / "edge_null_0samples.wav": "no decodable audio",
        silent: "no audio track",
    }
    for audio, message in cases.items():
        with pytest.raises(AvctError, match=message) as e:
            with VideoWriter(out_dir / "out.mp4", audio_path=audio, frames_dir=out_dir / "frames") as w:
                w.write(np.zeros((SIZE, SIZE, 3), np.uint8))
        assert "\n" not in str(e.value)
    assert listing(out_dir) == []


def test_reading_bad_videos_is_a_user_error(audio_dir, tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    cases = {tmp_path / "missing.mp4": "not found", garbage: "cannot read video",
             audio_dir / "dreamtalk_spanish1_5s.wav": "no video stream"}
    for path, message in cases.items():
        with pytest.raises(AvctError, match=message):
            probe_video(path)
        with pytest.raises(AvctError, match=message):
            read_video(path)


def test_writer_without_with_block(tmp_path):
    """close() finalises; a failed write() discards the output and close() then refuses."""
    w = VideoWriter(tmp_path / "ok.mp4")
    w.write(smooth_frame(0))
    assert w.close() == tmp_path / "ok.mp4" and probe_video(tmp_path / "ok.mp4").frame_count == 1

    w = VideoWriter(tmp_path / "bad.mp4")
    w.write(smooth_frame(0))
    with pytest.raises(ValueError):
        w.write(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="aborted"):
        w.close()
    assert listing(tmp_path) == ["ok.mp4"]


def test_encoder_options_are_checked(tmp_path):
    with pytest.raises(AvctError, match="preset"):
        VideoWriter(tmp_path / "a.mp4", preset="fastestest")
    with pytest.raises(AvctError, match="crf"):
        VideoWriter(tmp_path / "a.mp4", crf=60)
    write_video(tmp_path / "a.mp4", [smooth_frame(0)] * 2, preset="ultrafast", crf=0)
    assert listing(tmp_path) == ["a.mp4"]


def test_a_file_with_two_audio_tracks_muxes_the_track_the_lips_follow(tmp_path):
    """Speech and features come from one track, the mp4's sound from the same one (not simply the first)."""
    import av

    from avct.audio.decode import load_audio

    rate, seconds = 16000, 1.0
    t = np.arange(int(rate * seconds)) / rate
    tones = {"a": 0.3 * np.sin(2 * np.pi * 220 * t), "b": 0.3 * np.sin(2 * np.pi * 1000 * t)}
    src = tmp_path / "two_tracks.mkv"
    with av.open(str(src), "w") as out:
        streams = {}
        for name in ("a", "b"):                      # the second track is marked as the default one
            streams[name] = out.add_stream("aac", rate=rate, layout="mono")
        streams["a"].disposition = av.stream.Disposition(0)
        streams["b"].disposition = av.stream.Disposition.default
        for name, tone in tones.items():
            samples = (tone * 32767).astype(np.int16)[None]
            for i in range(0, samples.shape[1], 1024):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, i:i + 1024]), format="s16", layout="mono")
                frame.sample_rate, frame.pts = rate, i
                for packet in streams[name].encode(frame):
                    out.mux(packet)
        for s in streams.values():
            for packet in s.encode(None):
                out.mux(packet)
    heard = load_audio(src).samples
    video = tmp_path / "out.mp4"
    write_video(video, [smooth_frame(i) for i in range(25)], audio_path=src)
    muxed = load_audio(video).samples

    def dominant_hz(x: np.ndarray) -> float:
        n = 8000                                   # 0.5 s at 16 kHz: 2 Hz bins
        return float(np.argmax(np.abs(np.fft.rfft(x[2000:2000 + n]))) * 16000 / n)
    assert dominant_hz(heard) == 1000.0             # the default track
    assert dominant_hz(muxed) == dominant_hz(heard), (dominant_hz(heard), dominant_hz(muxed))


def test_probe_reports_the_track_the_lips_follow(tmp_path):
    """probe_video describes the same audio track as the decoder (the default one), not simply the first."""
    import av

    rate = 16000
    src = tmp_path / "tracks.mkv"
    with av.open(str(src), "w") as out:
        picture = out.add_stream("mpeg4", rate=25)
        picture.width = picture.height = 64
        first = out.add_stream("pcm_s16le", rate=rate, layout="mono")
        default = out.add_stream("flac", rate=rate, layout="mono")
        first.disposition = av.stream.Disposition(0)
        default.disposition = av.stream.Disposition.default
        for i in range(5):
            for packet in picture.encode(av.VideoFrame.from_ndarray(smooth_frame(i)[:64, :64], format="rgb24")):
                out.mux(packet)
        for stream in (first, default):
            frame = av.AudioFrame.from_ndarray((np.random.default_rng(0).normal(0, 3000, (1, rate // 5))).astype(np.int16),
                                               format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, 0
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                out.mux(packet)
        for packet in picture.encode(None):
            out.mux(packet)
    assert probe_video(src).audio_codec == "flac"
