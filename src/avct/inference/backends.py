"""Inference runtimes for the renderer, behind one switch (``--backend``).

The renderer is nearly all the work per frame. ``torch`` runs it eagerly with avct's own folds
(:mod:`avct.models.blocks`). ``openvino`` runs the same graph (``generator.render``: dense motion, warp,
bottleneck, decoder), exported once per set of weights, on OpenVINO's CPU plugin in fp32: equal to
PyTorch fp32 within 1e-4 (tested). ``openvino-int8`` quantises the convolutions that dominate the cost,
the bottleneck residual blocks and the decoder, with NNCF's post-training quantisation; the dense motion
network (masks, occlusion, the sampling grid) and the warps stay fp32, because int8 masks move the grid
(quantising them cost several dB of PSNR on the bundled weights: docs/performance.md, "Runtimes").
Calibration is
deterministic: the shipped calibration face (public-domain NASA photo, ``assets/calibration``) with
seeded keypoint motion, so a given set of weights always gives the same int8 model.

Where the sharp output does not show the renderer's picture, only the dense motion runs
(``generator.motion``, ``picture=False``), in PyTorch whatever the backend: on the CPUs measured eager
PyTorch runs it faster than OpenVINO's fp32 graph of it (docs/performance.md, "The dense motion alone"),
and in exact fp32, which the int8 graph does not quite keep (its field is off by up to 0.006 of the
crop).

Exported models are cached under ``$AVCT_CACHE_DIR`` (default ``~/.cache/avct``), keyed by the weights,
the mode and the OpenVINO version; the first run with new weights converts (tens of seconds), later runs
load in about two seconds.

``auto`` (the default) is ``openvino-int8`` where it can run (a CPU, fp32 asked, OpenVINO installed) and
its model of these weights is already in the cache, else ``torch``: a conversion is never started
unasked, as it would cost a short job more than it saves. ``scripts/setup.sh`` prepares the bundled
weights' model (``python -m avct.inference.backends [WEIGHTS]``), so a default job on a fresh machine
gets the fastest runtime from its first frame.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..errors import AvctError
from ..models.blocks import plain_layers
from ..models.keypoints import Keypoints
from ..models.renderer import OcclusionAwareGenerator, SourceEncoding
from .options import BACKENDS

OUTPUTS = ("prediction", "deformation", "occlusion_map")
CALIBRATION_BATCHES = 6
CALIBRATION_BATCH_SIZE = 8
# Std of the seeded driving motion about the source keypoints (positions in the [-1, 1] frame, jacobian
# entries): a talking head's order of magnitude. What counts is checked on real speech: the int8 PSNR test.
CALIBRATION_MOTION = (0.03, 0.05)
CALIBRATION_FACE = Path(__file__).parents[1] / "assets" / "calibration" / "face_256.png"
_FORMAT = "1"  # bump when the exported graph changes, so stale cache entries are not used

Render = Callable[[SourceEncoding, Keypoints, Keypoints], dict]


def cache_dir() -> Path:
    return Path(os.environ.get("AVCT_CACHE_DIR") or Path.home() / ".cache" / "avct")


class _RenderGraph(nn.Module):
    """``generator.render`` with tensors in and out, the form a graph exporter traces. The source encoding
    comes in at batch 1 and is broadcast to the driving batch inside the graph (no copies outside it)."""

    def __init__(self, generator: OcclusionAwareGenerator, outputs: tuple[str, ...]):
        super().__init__()
        self.generator = generator
        self.outputs = outputs

    def forward(self, features, image_down, kp_src_value, kp_src_jacobian, kp_drv_value, kp_drv_jacobian):
        b = kp_drv_value.shape[0]
        features = features.expand(b, -1, -1, -1)                       # (B, C, 64, 64)
        image_down = image_down.expand(b, -1, -1, -1)                   # (B, 3, 64, 64)
        source = SourceEncoding(image_down, features, image_down)       # the image itself is not used to render
        out = self.generator.render(source, Keypoints(kp_src_value.expand(b, -1, -1), kp_src_jacobian.expand(b, -1, -1, -1)),
                                    Keypoints(kp_drv_value, kp_drv_jacobian))
        return tuple(out[name] for name in self.outputs)


def _inputs(source: SourceEncoding, kp_source: Keypoints, kp_driving: Keypoints) -> list[np.ndarray]:
    return [t.detach().float().contiguous().numpy() for t in
            (source.features[:1], source.image_down[:1], kp_source.value[:1], kp_source.jacobian[:1],
             kp_driving.value, kp_driving.jacobian)]


def _weights_key(networks: tuple[nn.Module, ...], mode: str) -> str:
    import openvino

    digest = hashlib.sha256(f"{_FORMAT}|{mode}|{openvino.__version__}".encode())
    for network in networks:
        digest.update(repr(getattr(network, "cfg", None)).encode())
        for name, tensor in sorted(network.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def model_path(generator: OcclusionAwareGenerator, keypoint_detector: nn.Module, mode: str) -> Path:
    """Where the exported model (``mode``: fp32 or int8) of these weights is cached (int8 depends on the
    calibration, hence on the detector that places its keypoints)."""
    networks = (generator, keypoint_detector) if mode == "int8" else (generator,)
    return cache_dir() / "openvino" / _weights_key(networks, mode) / "render.xml"


def _import_openvino():
    try:
        import openvino
    except ImportError:
        raise AvctError("the openvino backends need the openvino package: pip install openvino nncf "
                        "(or use --backend torch)") from None
    return openvino


class OpenVinoRenderer:
    """Callable as ``generator.render(source, kp_source, kp_driving)`` -> dict of torch tensors."""

    def __init__(self, generator: OcclusionAwareGenerator, keypoint_detector: nn.Module, mode: str = "fp32",
                 threads: int | None = None):
        ov = _import_openvino()
        generator = generator.float().eval()
        self.mode = mode
        self.outputs = tuple(n for n in OUTPUTS if n != "occlusion_map" or generator.cfg.estimate_occlusion_map)
        model = self._load_or_export(ov, generator, keypoint_detector)
        # f32 for every layer left unquantised: where the CPU has bf16 OpenVINO would otherwise run them, the
        # dense motion network's grid among them, in bf16 (the quantised convolutions stay int8)
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()),
                  "INFERENCE_PRECISION_HINT": "f32"}
        self.compiled = ov.Core().compile_model(model, "CPU", config)

    def _load_or_export(self, ov, generator: OcclusionAwareGenerator, keypoint_detector: nn.Module):
        path = model_path(generator, keypoint_detector, self.mode)
        if path.is_file():
            return ov.Core().read_model(path)
        model = export(generator, keypoint_detector, self.outputs)
        if self.mode == "int8":
            model = quantize(model, calibration_inputs(generator, keypoint_detector))
        _save_atomically(ov, model, path)
        return model

    def __call__(self, source: SourceEncoding, kp_source: Keypoints, kp_driving: Keypoints) -> dict:
        if kp_source.jacobian is None or kp_driving.jacobian is None:
            raise AvctError("the openvino backends need keypoints with jacobians")
        results = self.compiled(_inputs(source, kp_source, kp_driving))
        return {name: torch.from_numpy(np.asarray(results[i])) for i, name in enumerate(self.outputs)}


def export(generator: OcclusionAwareGenerator, keypoint_detector: nn.Module, outputs: tuple[str, ...]):
    """The renderer as an OpenVINO model, traced from the plain layers (OpenVINO fuses them itself)."""
    ov = _import_openvino()
    example = calibration_inputs(generator, keypoint_detector, batches=1, batch_size=2)[0]
    with torch.no_grad(), plain_layers():
        return ov.convert_model(_RenderGraph(generator, outputs).eval(),
                                example_input=tuple(torch.from_numpy(a) for a in example))


def quantize(model, calibration: list[list[np.ndarray]]):
    """Post-training int8 of the convolutions outside the dense motion network (NNCF)."""
    try:
        import nncf
    except ImportError:
        raise AvctError("--backend openvino-int8 needs the nncf package: pip install nncf") from None
    return nncf.quantize(model, nncf.Dataset(calibration), subset_size=len(calibration),
                         preset=nncf.QuantizationPreset.MIXED, fast_bias_correction=True,
                         ignored_scope=nncf.IgnoredScope(patterns=[".*dense_motion_network.*"],
                                                         types=["MatMul", "GridSample"], validate=False))


def calibration_inputs(generator: OcclusionAwareGenerator, keypoint_detector: nn.Module,
                       batches: int = CALIBRATION_BATCHES, batch_size: int = CALIBRATION_BATCH_SIZE) -> list[list[np.ndarray]]:
    """Renderer inputs from the shipped calibration face (its own keypoints) and seeded keypoint motion."""
    from ..face.image import read_image

    image = read_image(CALIBRATION_FACE)
    source = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        encoding = generator.encode_source(source)
        kp_source = keypoint_detector.detect(source).keypoints
    rng = np.random.default_rng(0)
    value, jacobian = kp_source.value.numpy(), kp_source.jacobian.numpy()
    sigma_value, sigma_jacobian = CALIBRATION_MOTION
    feeds = []
    for _ in range(batches):
        drv_value = value + sigma_value * rng.standard_normal((batch_size, *value.shape[1:]))
        drv_jacobian = jacobian + sigma_jacobian * rng.standard_normal((batch_size, *jacobian.shape[1:]))
        driving = Keypoints(torch.from_numpy(drv_value.astype(np.float32)), torch.from_numpy(drv_jacobian.astype(np.float32)))
        feeds.append(_inputs(encoding, kp_source, driving))
    return feeds


def _save_atomically(ov, model, path: Path) -> None:
    """Write the model's .xml/.bin into a fresh folder, then rename it into place (a crash or a second
    process never leaves a half-written model where the next run would load it)."""
    path.parent.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent.parent))
    try:
        ov.save_model(model, tmp / path.name, compress_to_fp16=False)  # the default halves fp32 weights
        try:
            os.replace(tmp, path.parent)
        except OSError:  # another process got there first: theirs is as good as ours
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_backend(backend: str, generator: OcclusionAwareGenerator, keypoint_detector: nn.Module,
                    device: torch.device, dtype: torch.dtype) -> str:
    """``backend`` itself, or for ``auto``: ``openvino-int8`` where it runs (CPU, fp32) and its model of
    these weights is cached, else ``torch``."""
    if backend not in BACKENDS:
        raise AvctError(f"unknown backend {backend!r}; use {', '.join(BACKENDS)}")
    if backend != "auto":
        check_backend(backend, device, dtype)
        return backend
    if device.type != "cpu" or dtype != torch.float32 or not (cache_dir() / "openvino").is_dir():
        return "torch"
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "torch"
    return "openvino-int8" if model_path(generator, keypoint_detector, "int8").is_file() else "torch"


def check_backend(backend: str, device: torch.device, dtype: torch.dtype) -> None:
    """One-line errors for a concrete ``backend`` that cannot run with this device and precision."""
    if backend not in BACKENDS or backend == "auto":
        raise AvctError(f"unknown backend {backend!r}; use {', '.join(b for b in BACKENDS if b != 'auto')}")
    if backend == "torch":
        return
    if device.type != "cpu":
        raise AvctError(f"--backend {backend} runs on the CPU; use --device cpu or --backend torch")
    if dtype != torch.float32:
        raise AvctError(f"--backend {backend} chooses its own precision; leave --precision at fp32")


def prepare_int8(weights: str | None = None) -> Path:
    """Convert the renderer of ``weights`` (default: the bundled ones) to the openvino-int8 model now,
    into the cache, so that ``auto`` runs it from the first job. Returns the model's path."""
    from ..weights import load_models

    models = load_models(weights)
    models.require("keypoint_detector", "generator")
    OpenVinoRenderer(models.generator, models.keypoint_detector, "int8")
    return model_path(models.generator.float().eval(), models.keypoint_detector, "int8")


def renderer_for(generator: OcclusionAwareGenerator, keypoint_detector: nn.Module, backend: str,
                 device: torch.device, dtype: torch.dtype, picture: bool = True) -> Render:
    """The render callable of a concrete ``backend`` (``torch``: the generator's own ``render``;
    ``auto`` is resolved first, :func:`resolve_backend`). ``picture=False``: the dense motion alone, for
    output that does not show the renderer's picture (``generator.motion``, whatever the backend)."""
    check_backend(backend, device, dtype)
    if not picture:
        return generator.motion
    if backend == "torch":
        return generator.render
    return OpenVinoRenderer(generator, keypoint_detector, "int8" if backend == "openvino-int8" else "fp32")


if __name__ == "__main__":  # python -m avct.inference.backends [WEIGHTS]: what scripts/setup.sh runs
    import sys

    print(prepare_int8(sys.argv[1] if len(sys.argv) > 1 else None))
