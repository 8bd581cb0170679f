"""Run ``avct serve``: load the model once for the whole process, then serve the app with uvicorn."""
from __future__ import annotations

import logging
import socket
from typing import Sequence

from ..errors import AvctError
from ..inference.options import RuntimeOptions
from .jobs import Job, Progress, Runner
from .settings import ServeSettings

log = logging.getLogger("avct.serve")


def pipeline_runner(pipeline) -> Runner:
    """A job runner: the job's options go to ``Pipeline.generate`` as they are."""
    def run(job: Job, progress: Progress) -> None:
        pipeline.generate(job.image, job.audio, job.video, options=job.options, progress=progress)
    return run


def bind_socket(host: str, port: int) -> socket.socket:
    """Listen before the model loads, so a taken port fails at once with one line (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise AvctError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(128)
    return sock


def serve(settings: ServeSettings, *, checkpoints: Sequence[str] | None = None,
          runtime: RuntimeOptions | None = None) -> None:
    """Serve until interrupted (Ctrl-C) one :class:`~avct.inference.pipeline.Pipeline` shared by every job
    (the bundled weights unless ``checkpoints`` are given, run as ``runtime`` says); job folders in a
    temporary work dir are removed on exit."""
    import uvicorn

    from ..inference.pipeline import Pipeline
    from .app import create_app

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: anyone who can reach this address can use the server (no authentication)",
                    settings.host)
    sock = bind_socket(settings.host, settings.port)
    pipeline = Pipeline.load(checkpoints, runtime)
    log.info("model loaded (%s, %s, renderer: %s); open http://%s:%d/", pipeline.device, pipeline.runtime.precision,
             pipeline.backend, settings.host, sock.getsockname()[1])
    app = create_app(settings, pipeline_runner(pipeline))
    server = uvicorn.Server(uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=5))
    server.run(sockets=[sock])
