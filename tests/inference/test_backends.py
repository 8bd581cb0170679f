"""The renderer's runtimes (avct.inference.backends): OpenVINO fp32 computes what PyTorch fp32 computes, int8 stays
within the PSNR floor on a real face driven by real speech, exported models are cached and reused, and
bad combinations are one-line errors. Bundled weights (a real trained renderer, not random weights:
int8's error depends on real activations)."""
import numpy as np
import pytest
import torch

pytest.importorskip("openvino")  # installed by scripts/setup.sh; optional for library users

from avct.inference import backends  # noqa: E402
from avct.errors import AvctError  # noqa: E402
from avct.media import ROWS_PER_FRAME  # noqa: E402
from avct.inference.pipeline import Pipeline
from avct.inference.inputs import Speech, load_reference, load_speech  # noqa: E402

NUM_FRAMES = 24


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("avct-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AVCT_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def inputs(data):
    reference = load_reference(data / "image" / "obama_frontal_facerec.jpg")
    speech = load_speech(data / "audio" / "retalking_audio1_5s.wav")
    return reference, Speech(speech.features[:ROWS_PER_FRAME * NUM_FRAMES], speech.phonemes[:NUM_FRAMES])


def _render(backend: str, inputs) -> dict:
    reference, speech = inputs
    pipeline = Pipeline.load(None, device="cpu", backend=backend)
    outs = list(pipeline.render_outputs(reference, speech))
    return {key: torch.cat([o[key] for o in outs])[:NUM_FRAMES].numpy() for key in outs[0]}


@pytest.fixture(scope="module")
def reference_outputs(inputs):
    return _render("torch", inputs)


def psnr(a, b):
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def test_openvino_fp32_equals_torch_and_is_reused_from_the_cache(cache, inputs, reference_outputs, monkeypatch):
    first = _render("openvino", inputs)
    assert set(first) == set(reference_outputs) == {"prediction", "deformation", "occlusion_map"}
    for key, value in reference_outputs.items():
        assert first[key].shape == value.shape
        assert np.abs(first[key] - value).max() <= 1e-4, key
    assert np.abs(first["prediction"][-1] - first["prediction"][0]).mean() > 1e-3  # frames move: not vacuous
    models = list(cache.glob("openvino/*/render.xml"))
    assert len(models) == 1 and not list(cache.glob("openvino/.tmp-*"))

    def no_export(*args, **kwargs):
        raise AssertionError("exported again instead of loading the cached model")

    monkeypatch.setattr(backends, "export", no_export)
    again = _render("openvino", inputs)
    assert np.abs(again["prediction"] - reference_outputs["prediction"]).max() <= 1e-4


def test_openvino_int8_meets_the_psnr_floor(cache, inputs, reference_outputs):
    int8 = _render("openvino-int8", inputs)
    value = psnr(int8["prediction"], reference_outputs["prediction"])
    assert 35.0 <= value < 80.0, value  # int8 really is in use (not fp32), and within the floor


def test_auto_runs_int8_only_where_its_model_is_prepared(cache, monkeypatch, tmp_path):
    """The default backend: openvino-int8 once the weights' int8 model is prepared (what setup.sh does for
    the bundled weights), torch with an empty cache or where int8 cannot run; auto never converts."""
    prepared = backends.prepare_int8()
    assert prepared.is_file() and cache in prepared.parents
    assert Pipeline.load(None, device="cpu").backend == "openvino-int8"

    def no_export(*args, **kwargs):
        raise AssertionError("auto started a conversion")

    monkeypatch.setattr(backends, "export", no_export)
    assert Pipeline.load(None, device="cpu", precision="bf16").backend == "torch"
    assert Pipeline.load(None, device="cpu", compile=True).backend == "torch"
    monkeypatch.setenv("AVCT_CACHE_DIR", str(tmp_path))
    assert Pipeline.load(None, device="cpu").backend == "torch"


def test_calibration_is_deterministic(official_models):
    generator, detector = official_models.generator.float().eval(), official_models.keypoint_detector.float().eval()
    a = backends.calibration_inputs(generator, detector, batches=2, batch_size=3)
    b = backends.calibration_inputs(generator, detector, batches=2, batch_size=3)
    assert len(a) == 2 and all(x.shape == y.shape and np.array_equal(x, y) for fa, fb in zip(a, b) for x, y in zip(fa, fb))
    assert a[0][4].shape == (3, 10, 2) and not np.array_equal(a[0][4], a[1][4])  # seeded, different batches


@pytest.mark.parametrize("kwargs,message", [
    ({"backend": "onnx"}, "unknown backend 'onnx'; use auto, torch, openvino, openvino-int8"),
    ({"backend": "openvino", "precision": "bf16"}, "chooses its own precision"),
    ({"backend": "openvino", "compile": True}, "--compile is for the torch backend"),
])
def test_bad_backend_choices_are_one_line_errors(kwargs, message):
    with pytest.raises(AvctError, match=message):
        Pipeline.load(None, device="cpu", **kwargs)


def test_generate_with_the_openvino_backend(cache, data, tmp_path, inputs):
    from avct.cli import main
    from avct.video.reader import probe_video

    import scipy.io.wavfile

    rate, samples = scipy.io.wavfile.read(data / "audio" / "retalking_audio1_5s.wav")
    scipy.io.wavfile.write(tmp_path / "speech.wav", rate, samples[: int(1.5 * rate)])  # 1.5 s: the flag is what is tested
    # fill renderer: the bundled weights' default job runs the dense motion alone, in torch
    out = tmp_path / "out.mp4"
    code = main(["generate", "--image", str(data / "image" / "obama_frontal_facerec.jpg"), "--audio",
                 str(tmp_path / "speech.wav"), "--backend", "openvino", "--fill", "renderer", "-o", str(out), "-q"])
    assert code == 0 and probe_video(out).codec == "h264"
