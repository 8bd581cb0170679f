"""A stand-in for the networks where the machinery around them is under test (batch, the server, faults):
``generate`` writes a real H.264 mp4 through avct's own atomic :class:`~avct.video.writer.VideoWriter`, one
noise frame every ``delay`` seconds, so that a process can be killed while a video is half-written.

Run as a script it is a process to kill (``tests/hostile/test_hostile_faults.py``):

* ``python stand_in.py serve WORK_DIR PORT_FILE``: the ``avct serve`` app (create_app, pipeline_runner,
  bind_socket, uvicorn, as :func:`avct.serving.server.serve` wires them) over a stand-in; writes its port to
  PORT_FILE once it listens;
* ``python stand_in.py batch MANIFEST OUT_DIR``: :func:`avct.batch.run_batch` over a stand-in, then prints
  the summary line as ``avct batch`` does.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np


class StandInPipeline:
    device = "cpu"

    def __init__(self, frames: int = 25, delay: float = 0.0, size: int = 64) -> None:
        self.frames, self.delay, self.size = frames, delay, size
        self.calls: list[Path] = []

    def generate(self, image, audio, output, options=None, *, frames_dir=None, progress=False, **_):
        from avct.errors import AvctError
        from avct.video.writer import VideoWriter

        if not Path(image).is_file():
            raise AvctError(f"image not found: {image}")
        self.calls.append(Path(output))
        rng = np.random.default_rng(len(self.calls))
        with VideoWriter(output, preset="ultrafast") as writer:
            for i in range(self.frames):
                writer.write(rng.integers(0, 256, (self.size, self.size, 3), dtype=np.uint8))
                if callable(progress):
                    progress(i + 1, self.frames)
                time.sleep(self.delay)
        return Path(output)


def _serve(work_dir: str, port_file: str, delay: float) -> None:
    import uvicorn

    from avct.serving.app import create_app
    from avct.serving.server import bind_socket, pipeline_runner
    from avct.serving.settings import ServeSettings

    sock = bind_socket("127.0.0.1", 0)
    app = create_app(ServeSettings(work_dir=Path(work_dir)), pipeline_runner(StandInPipeline(30, delay)))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    Path(port_file).write_text(str(sock.getsockname()[1]))
    server.run(sockets=[sock])


def _batch(manifest: str, out_dir: str, delay: float) -> None:
    from avct.batch import run_batch

    print(run_batch(manifest, out_dir, StandInPipeline(25, delay)).summary(), flush=True)


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    delay = float(rest.pop()) if len(rest) == 3 else 0.05
    {"serve": _serve, "batch": _batch}[command](*rest, delay)
