"""``avct serve``: the web page and HTTP API on one loaded model."""
from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_model_options, runtime_options


def add_serve_parser(sub: argparse._SubParsersAction) -> None:
    from ..limits import LIMITS
    from ..serving.settings import ServeSettings  # no FastAPI import: `avct --help` stays fast

    d = ServeSettings()
    p = sub.add_parser("serve", help="web page + HTTP API (jobs: upload, poll, download) on one loaded model",
                       description="Serve a web page at / and a versioned HTTP API at /v1 (OpenAPI: /openapi.json). "
                                   "The model loads once; jobs run in the background, others wait in a bounded queue.")
    p.add_argument("--host", help=f"address to listen on (default {d.host}: this machine only; the server has no "
                                  "authentication)")
    p.add_argument("--port", type=int, help=f"port (default {d.port}; 0: any free port)")
    add_model_options(p)  # weights and runtime, as for generate
    p.add_argument("--max-upload-mb", type=float, help=f"largest request body, photo + audio (default {d.max_upload_mb:g})")
    p.add_argument("--max-audio-s", type=float, help=f"longest speech accepted, seconds (default {d.max_audio_s:g}, "
                                                     f"at most {LIMITS.max_audio_s:g})")
    p.add_argument("--workers", type=int, help=f"jobs generating at once (default {d.workers})")
    p.add_argument("--queue", type=int, help=f"jobs waiting beyond those, uploads being checked included; "
                                             f"more get HTTP 503 at once (default {d.queue})")
    p.add_argument("--keep-minutes", type=float,
                   help=f"finished jobs and their files are deleted after this long (default {d.keep_minutes:g})")
    p.add_argument("--max-job-s", type=float,
                   help=f"a job generating longer than this fails, seconds (default {d.max_job_s:g})")
    p.add_argument("--work-dir", type=Path, help="folder for per-job uploads and videos (default: a temporary folder)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from ..serving.server import serve
    from ..serving.settings import ServeSettings

    serve(ServeSettings.from_values(vars(args)), checkpoints=args.checkpoint, runtime=runtime_options(args))
    return 0


