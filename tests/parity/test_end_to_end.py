"""The whole official test path (parity pack §2.10) through the cached, batched pipeline."""
import itertools

import numpy as np
import pytest
import torch

from avct.inference.options import GenerateOptions
from avct.inference.pipeline import Pipeline
from avct.inference.inputs import Reference, Speech
from support.parity_data import golden


@pytest.fixture(scope="module")
def run(official_models, parity):
    g = golden(parity, "end_to_end.npz")
    features = golden(parity, "audio_features.npz")["feat41_16k"].astype(np.float32)
    speech = Speech(features, golden(parity, "phonemes.npz")["ph_ids"])
    reference = Reference(torch.from_numpy(golden(parity, "kp_detector.npz")["image"]),
                          g["reference_pose"].astype(np.float64))
    pipeline = Pipeline(official_models, device="cpu", batch_size=4)
    return g, pipeline, reference, speech


def worst(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def test_poses(run):
    g, pipeline, reference, speech = run
    assert speech.num_frames == int(g["num_frames"]) == 110
    poses = pipeline.head_poses(reference, speech)
    assert worst(poses[1:, :3], g["poses"][1:110, :3]) <= 1e-4
    assert worst(poses[1:, 3:], g["poses"][1:110, 3:]) <= 1e-2
    assert worst(poses[0], g["poses"][0]) <= 1e-5 * np.abs(g["poses"][0]).max()


def test_keypoints_of_every_frame(run):
    g, pipeline, reference, speech = run
    poses = pipeline.head_poses(reference, speech)
    with torch.inference_mode():
        fmap = pipeline.models.keypoint_detector.detect(reference.image).feature_map
        # two uneven chunks: the sliding window must not depend on where a chunk starts
        kp = [pipeline.driving_keypoints(speech, poses, fmap, s, e) for s, e in ((0, 37), (37, 110))]
    value = torch.cat([k.value for k in kp]).numpy()
    jac = torch.cat([k.jacobian for k in kp]).numpy()
    assert worst(value, g["ph2kp_value"]) <= 5e-4
    assert worst(jac, g["ph2kp_jacobian"]) <= 5e-4


def test_first_frames(run):
    g, pipeline, reference, speech = run
    frames = np.stack(list(itertools.islice(pipeline.frames(reference, speech, chunk=8, options=GenerateOptions(render="classic")), 8)))
    assert frames.dtype == np.uint8 and frames.shape == (8, 256, 256, 3)
    diff = np.abs(frames.astype(int) - g["frames_u8"].astype(int))
    assert diff.max() <= 2 and (diff > 0).mean() <= 0.01, (diff.max(), (diff > 0).mean())
    # the frames really move (guards against a constant output passing by luck)
    assert np.abs(frames[7].astype(int) - frames[0].astype(int)).mean() > 5
