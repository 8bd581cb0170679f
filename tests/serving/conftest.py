"""Real `avct serve` servers for the tests (see support/live_server.py), over one Pipeline with the bundled weights
(fp32) loaded once for the session, and a 2 s cut of the example speech."""
from __future__ import annotations

import contextlib
import itertools
from pathlib import Path

import numpy as np
import pytest

from support.live_server import EXAMPLE_SPEECH, SPEECH_SECONDS, Served, live_server


@pytest.fixture(scope="session")
def serving_pipeline():
    from avct.inference.pipeline import Pipeline

    return Pipeline.load(None, device="cpu", precision="fp32")


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
