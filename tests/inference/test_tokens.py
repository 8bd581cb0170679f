"""The job's AVCT token cache (avct.inference.tokens): the tokens computed per chunk before, each frame once."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def job():
    """The bundled weights, a real photo and 2 s of real speech: what _render_jobs builds a cache from."""
    from pathlib import Path

    from avct.inference.pipeline import Pipeline
    from avct.inference.inputs import load_reference, load_speech
    from avct.weights import default_weights_dir
    from avct.weights import load_models
    from support.shared_files import shared_image

    pipeline = Pipeline(load_models(default_weights_dir()), device="cpu")
    reference = load_reference(shared_image("obama_frontal_facerec.jpg"))
    example = Path(__file__).resolve().parents[2] / "examples" / "speech_librivox_austen_7s.wav"
    speech = load_speech(example)
    poses = pipeline.head_poses(reference, speech)
    with torch.inference_mode():
        _, feature_map, _ = pipeline.encode_reference(reference)
    return pipeline, reference, speech, poses, feature_map


def cache(job, ahead=None):
    from avct.inference.tokens import FrameTokens

    pipeline, _, speech, poses, feature_map = job
    return FrameTokens(pipeline.models.avct, speech.phonemes, speech.frame_rows(), poses, feature_map,
                       pipeline.device, pipeline.avct_dtype, ahead)


def test_cached_tokens_are_the_directly_computed_ones_inside_and_outside_the_video(job):
    pipeline, _, speech, poses, feature_map = job
    n = speech.num_frames
    positions = np.concatenate([np.arange(-7, 12), np.arange(n - 6, n + 4)])  # padding on both sides
    from avct.inference.tokens import window_tokens

    enc, dec = window_tokens(pipeline.models.avct, positions, speech.phonemes, speech.frame_rows(), poses,
                             feature_map, pipeline.device, pipeline.avct_dtype)  # one call, as chunks did
    tokens = cache(job)
    got_enc, got_dec = tokens.get(positions)
    assert torch.allclose(got_enc, enc, atol=1e-5, rtol=1e-5) and torch.allclose(got_dec, dec, atol=1e-5, rtol=1e-5)
    assert tokens._done.sum() == 12 + 6  # frames 0..11 and n-6..n-1: only the frames asked for


def test_each_frame_is_computed_once_by_threads_asking_for_overlapping_windows(job, monkeypatch):
    from avct.inference import tokens as module

    tokens = cache(job)
    computed = []
    compute = tokens._compute
    monkeypatch.setattr(tokens, "_compute", lambda frames, need: computed.extend(frames.tolist()) or compute(frames, need))
    windows = [np.arange(s - 5, s + 30) for s in range(0, 150, 25)]  # chunks of 25 with 5-frame margins
    threads = [threading.Thread(target=tokens.get, args=(w,)) for w in windows]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(computed) == list(range(0, 155)) and module.BLOCK == 64


def test_decoder_tokens_given_ahead_are_used_and_not_computed_again(job):
    from avct.inference.tokens import decoder_tokens_ahead

    pipeline, _, speech, _, feature_map = job
    stop = threading.Event()
    ahead = decoder_tokens_ahead(pipeline.models.avct, speech.frame_rows()[:70], feature_map, pipeline.device,
                                 pipeline.avct_dtype, stop)
    assert ahead.shape[0] == 70
    stop.set()  # a stopped computation returns what it has: nothing here, and the cache computes them all
    none = decoder_tokens_ahead(pipeline.models.avct, speech.frame_rows(), feature_map, pipeline.device,
                                pipeline.avct_dtype, stop)
    assert len(none) == 0
    assert torch.allclose(cache(job, none).get(np.arange(0, 5))[1], ahead[:5], atol=1e-5, rtol=1e-5)
    marked = ahead.clone()
    marked[3] = 42.0  # a value no computation gives: proves the given token is the one used
    tokens = cache(job, marked)
    _, dec = tokens.get(np.arange(0, 80))
    assert torch.all(dec[3] == 42.0)
    assert torch.allclose(dec[:70][torch.arange(70) != 3], ahead[torch.arange(70) != 3])
    assert torch.allclose(dec[70:], cache(job).get(np.arange(70, 80))[1], atol=1e-5, rtol=1e-5)
