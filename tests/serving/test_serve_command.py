"""`avct serve` as a user runs it: a separate process on loopback, the page, the OpenAPI schema, Ctrl-C."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import avct
from avct.inference.options import GenerateOptions
from avct.serving.client import request

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(avct.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}


def _default_ctrl_c() -> None:
    """In the server's process, Ctrl-C as a terminal delivers it: a test runner started in the background
    (``cmd &``) ignores SIGINT, and its children inherit that, so the server would never see it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_serve_process_answers_and_stops_on_ctrl_c(tmp_path):
    log = tmp_path / "serve.log"
    work = tmp_path / "work"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "avct", "serve", "--port", "0", "--max-audio-s", "30",
                                 "--work-dir", str(work), "--backend", "torch", "--threads", "1"],
                                stdout=out, stderr=subprocess.STDOUT, env=ENV, preexec_fn=_default_ctrl_c)
    try:
        deadline = time.monotonic() + 180
        while not (match := re.search(r"open http://127\.0\.0\.1:(\d+)/", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        url = f"http://127.0.0.1:{match.group(1)}"
        assert "renderer: torch" in log.read_text()  # the runtime flags reach the served pipeline
        while (page := _get(url + "/")) is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)

        assert page.status == 200 and b"<title>avct" in page.body
        script = request("GET", url + "/static/app.js")
        assert script.status == 200 and "javascript" in script.headers["content-type"]

        config = request("GET", url + "/v1/config").json()
        assert config["limits"]["max_audio_s"] == 30 and config["limits"]["max_upload_mb"] == 50
        file_options = ("phonemes", "pose_from")
        defaults = {k: v for k, v in GenerateOptions().as_dict().items() if k not in file_options}
        assert config["defaults"] == {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()}

        schema = request("GET", url + "/openapi.json").json()
        assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/video"} <= set(schema["paths"])
        form = schema["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert set(form["properties"]) == {"image", "audio", *defaults}
        assert form["properties"]["image"]["format"] == "binary" and form["required"] == ["image", "audio"]
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    assert code == 130, log.read_text()
    assert list(work.iterdir()) == []


def test_port_in_use_is_one_line_before_loading_the_model():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "avct", "serve", "--port", str(port)], capture_output=True,
                              text=True, timeout=120, env=ENV)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"avct: error: cannot listen on 127.0.0.1:{port}: ") and proc.stderr.count("\n") == 1


def _get(url: str):
    try:
        return request("GET", url, timeout=5)
    except OSError:
        return None
