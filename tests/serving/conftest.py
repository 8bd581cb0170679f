"""Real `avct serve` servers for the tests: uvicorn on a free localhost port in a thread, over one Pipeline with
the bundled weights (fp32) loaded once for the session, and a 2 s cut of the example speech."""
from __future__ import annotations

import contextlib
import itertools
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_IMAGE = REPO / "examples" / "astronaut.png"
EXAMPLE_SPEECH = REPO / "examples" / "speech_librivox_austen_7s.wav"
SPEECH_SECONDS = 2.0


@dataclass
class Served:
    url: str
    work_dir: Path

    def job_folders(self) -> list[Path]:
        return sorted(p for p in self.work_dir.iterdir() if p.is_dir())


@contextlib.contextmanager
def live_server(app) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 (any free port) until the block ends; yields the base URL."""
    import uvicorn

    from avct.serving.server import bind_socket

    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(120)


@pytest.fixture(scope="session")
def serving_pipeline():
    from avct.serving.server import load_pipeline

    return load_pipeline(None, device="cpu", precision="fp32")


@pytest.fixture(scope="session")
def speech_2s(tmp_path_factory) -> Path:
    """The first 2 s of the example speech (16 kHz mono int16 WAV): fast to generate."""
    import scipy.io.wavfile

    rate, samples = scipy.io.wavfile.read(EXAMPLE_SPEECH)
    assert rate == 16000 and samples.dtype == np.int16
    path = tmp_path_factory.mktemp("speech") / "speech_2s.wav"
    scipy.io.wavfile.write(path, rate, samples[: int(SPEECH_SECONDS * rate)])
    return path


@pytest.fixture
def serve(serving_pipeline, tmp_path):
    """``serve(**settings)`` starts a server (stopped after the test) and returns its URL and work dir."""
    from avct.serving.app import create_app
    from avct.serving.server import pipeline_runner
    from avct.serving.settings import ServeSettings

    numbers = itertools.count()
    with contextlib.ExitStack() as stack:
        def start(**settings) -> Served:
            work_dir = tmp_path / f"work{next(numbers)}"
            app = create_app(ServeSettings(work_dir=work_dir, **settings), pipeline_runner(serving_pipeline))
            return Served(stack.enter_context(live_server(app)), work_dir)

        yield start
