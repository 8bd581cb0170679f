"""The job's one progress bar (avct.inference.progress): the front-end's share of it, the frames after it,
and no ETA before the job has a rate worth extrapolating."""
import io

import pytest

from avct.inference import progress
from avct.media import FPS


@pytest.fixture
def bar(monkeypatch):
    out = io.StringIO()
    from tqdm import tqdm

    monkeypatch.setattr("tqdm.tqdm", lambda *a, **k: tqdm(*a, **k, file=out, mininterval=0))
    job = progress.JobProgress()
    job.start(30.0)
    yield job, out
    job.close()


def last_line(out: io.StringIO) -> str:
    return out.getvalue().replace("\r", "\n").strip().splitlines()[-1]


def test_the_speech_takes_its_share_then_the_frames_the_rest(bar):
    job, out = bar
    speech = progress.FRONTEND_COST * 30 * progress.SCALE
    frames = progress.FRAME_COST * 30 * FPS * progress.SCALE
    assert job.bar.total == round(speech + frames)
    job.speech(1.0)
    assert job.bar.n == round(speech)
    job.frames(375, 750)
    assert job.bar.n == round(speech + frames / 2)
    assert "frames" in last_line(out) and "375/750 frames" in last_line(out)
    job.frames(750, 750)
    assert job.bar.n == job.bar.total


def test_no_eta_until_a_share_of_the_job_is_done(bar):
    job, out = bar
    share = progress.ETA_FROM * job.bar.total / (progress.FRONTEND_COST * 30 * progress.SCALE)
    job.speech(share * 0.5)
    assert last_line(out).endswith("<?]"), last_line(out)
    job.speech(share * 1.01)
    assert not last_line(out).endswith("<?]"), last_line(out)


def test_small_steps_after_a_big_one_are_shown(bar):
    """tqdm's dynamic miniters (its default) stop redrawing until the next update is as large as the largest
    so far: after the front-end's jump the bar moved in ~18 % steps, seconds apart."""
    job, out = bar
    job.speech(1.0)
    for done in range(1, 6):
        job.frames(done, 750)
        assert f"{done}/750 frames" in last_line(out), last_line(out)
