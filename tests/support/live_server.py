"""A real `avct serve` server for tests: uvicorn on a free localhost port in a thread; the example inputs."""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


REPO = Path(__file__).resolve().parents[2]
EXAMPLE_IMAGE = REPO / "examples" / "astronaut.png"
EXAMPLE_SPEECH = REPO / "examples" / "speech_librivox_austen_7s.wav"
SPEECH_SECONDS = 2.0


def wait_until(condition, timeout: float = 10.0, every: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(every)


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
