"""Audio files in formats that shared/data does not hold, made from its WAVs with PyAV."""
from __future__ import annotations

from pathlib import Path

import av


def mux_frames(out, stream, frames) -> None:
    """Encode ``frames`` into ``stream``, mux every packet into ``out``, then flush the encoder."""
    for frame in frames:
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def write_flac(src: Path, out: Path, seconds: float | None = None, layout: str | None = None) -> Path:
    """``src`` (any audio) re-encoded as FLAC, its first ``seconds`` only when given."""
    with av.open(str(src)) as inp, av.open(str(out), "w") as dst:
        stream = dst.add_stream("flac", rate=inp.streams.audio[0].rate)
        if layout:
            stream.layout = layout
        def frames():
            for frame in inp.decode(audio=0):
                if seconds is not None and frame.time >= seconds:
                    return
                frame.pts = None
                yield frame
        mux_frames(dst, stream, frames())
    return out


def first_seconds(src: Path, dst: Path, seconds: float) -> Path:
    """The first ``seconds`` of an audio file, its packets copied as they are (same container and codec)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.audio[0]
        copy = out.add_stream_from_template(stream)
        for packet in inp.demux(stream):
            if packet.dts is None:
                continue
            if packet.pts * stream.time_base > seconds:
                break
            packet.stream = copy
            out.mux(packet)
    return dst
