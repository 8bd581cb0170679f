"""The cached/batched/streamed fast path computes exactly what the official per-frame loop computes;
bf16 stays visually identical to fp32. Official-size networks (weights by the parity rule)."""
import numpy as np
import pytest
import torch

from avct.audio.features import acoustic_features
from avct.audio.phonemes import frame_phoneme_ids, read_phoneme_json
from avct.testing.per_frame import per_frame_predictions
from avct.inference.pipeline import Pipeline
from avct.inference.inputs import Speech, load_reference


NUM_FRAMES = 14


@pytest.fixture(scope="module")
def models(official_checkpoint_dir):
    """Official-size networks loaded from the official-layout files, with near-identity jacobian heads
    (see ``shrink_jacobian_heads``: the rule's raw jacobians amplify batching noise beyond 1e-4)."""
    from avct.weights import load_models
    from avct.testing.weight_fill import shrink_jacobian_heads

    m = load_models(official_checkpoint_dir)
    shrink_jacobian_heads(m)
    return m


@pytest.fixture(scope="module")
def real_inputs(data):
    """A real photo (cropped, pose estimated) and real speech with phonemes."""
    import scipy.io.wavfile

    reference = load_reference(data / "image" / "obama_frontal_facerec.jpg")
    ref_dir = data / "phoneme_ref"
    wav = sorted(ref_dir.glob("*.wav"))[0]
    rate, samples = scipy.io.wavfile.read(wav)
    assert rate == 16000
    ids = frame_phoneme_ids(read_phoneme_json(wav.with_suffix(".json")))
    features = acoustic_features(samples[: 16000 * 2])  # 2 s are plenty
    speech = Speech(features[: 4 * NUM_FRAMES].astype(np.float32), np.asarray(ids[:NUM_FRAMES]))
    assert speech.num_frames == NUM_FRAMES
    return reference, speech


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def test_fast_path_equals_per_frame_loop(models, real_inputs):
    reference, speech = real_inputs
    pipeline = Pipeline(models, device="cpu", precision="fp32", batch_size=4)
    fast = torch.cat(list(pipeline.predictions(reference, speech, chunk=5))).numpy()  # uneven chunks
    slow = torch.cat(list(per_frame_predictions(pipeline, reference, speech))).numpy()
    assert fast.shape == slow.shape == (NUM_FRAMES, 3, 256, 256)
    assert np.abs(fast - slow).max() <= 1e-4
    assert np.abs(fast[-1] - fast[0]).mean() > 1e-3  # frames differ: the comparison is not vacuous


BF16_FRAMES = 4  # where bf16 is emulated (AVX2-only CPUs) a frame costs ~8 s: 4 frames say as much as 14


def test_bf16_matches_fp32(models, real_inputs):
    reference, speech = real_inputs
    speech = Speech(speech.features[: 4 * BF16_FRAMES], speech.phonemes[:BF16_FRAMES])
    fp32 = np.stack(list(Pipeline(models, device="cpu", precision="fp32").frames(reference, speech)))
    bf16 = np.stack(list(Pipeline(models, device="cpu", precision="bf16").frames(reference, speech)))
    assert fp32.shape[0] == BF16_FRAMES
    value = psnr(fp32 / 255.0, bf16 / 255.0)
    assert value >= 35.0, value
