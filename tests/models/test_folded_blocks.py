"""Inference-time folding in the convolution blocks (BN into conv, ×2 upsampling into a 2×2 phase conv)
gives the plain layers' outputs, and never leaks into training or the state dict."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avct.config import DenseMotionConfig, GeneratorConfig
from avct.models.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d, conv_on_packed_phases, \
    interleave_phases, packed_phase_kernels, upsample2x_conv3x3_packed, upsample2x_phase_kernels, \
    plain_layers, zero_unused_phase_borders
from avct.models.renderer import OcclusionAwareGenerator


def _randomise_norms(module: torch.nn.Module) -> None:
    """Statistics far from the identity, so that a BN left out or folded wrongly shows."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.3, 3)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-1, 1)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size", [(7, 9), (8, 8), (1, 5)])
def test_upsample_conv_equals_nearest_upsample_then_conv(channels_last, size):
    torch.manual_seed(0)
    x = torch.randn(2, 5, *size, dtype=torch.float64)
    conv = torch.nn.Conv2d(5, 3, 3, padding=1).double()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = conv(F.interpolate(x, scale_factor=2))
    got = interleave_phases(upsample2x_conv3x3_packed(x, upsample2x_phase_kernels(conv.weight).double(), conv.bias))
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-12, rtol=0)  # the same sums, regrouped
    assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@pytest.mark.parametrize("k", [1, 3, 5, 7, 9])
@pytest.mark.parametrize("channels_last", [False, True])
def test_conv_on_packed_phases_equals_conv_on_the_upsampled_image(k, channels_last):
    """The renderer's tail: ReLU(conv3×3(up×2(x))) then a k×k 'same' conv, read from the packed phases."""
    torch.manual_seed(4)
    x = torch.randn(2, 5, 7, 9, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    up = torch.nn.Conv2d(5, 4, 3, padding=1).double()
    final = torch.nn.Conv2d(4, 3, k, padding=k // 2).double()
    expected = final(F.relu(up(F.interpolate(x, scale_factor=2))))
    packed = F.relu(upsample2x_conv3x3_packed(x, upsample2x_phase_kernels(up.weight).double(), up.bias))
    assert packed.shape == (2, 16, 8, 10)
    got = conv_on_packed_phases(zero_unused_phase_borders(packed), packed_phase_kernels(final.weight).double(),
                                final.bias)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-12, rtol=0)


def test_generator_decode_at_inference_equals_the_plain_layers():
    torch.manual_seed(5)
    g = OcclusionAwareGenerator(GeneratorConfig(
        block_expansion=4, max_features=16, num_bottleneck_blocks=1, num_kp=3,
        dense_motion=DenseMotionConfig(block_expansion=4, max_features=8, num_blocks=2))).eval()
    _randomise_norms(g)
    x = torch.randn(2, 16, 6, 5)
    plain = g.decode(x)
    with torch.inference_mode():
        fast = g.decode(x)
    assert fast.shape == plain.shape == (2, 3, 24, 20)
    assert torch.allclose(fast, plain, atol=2e-5, rtol=1e-5), (fast - plain).abs().max()


@pytest.mark.parametrize("block", [lambda: DownBlock2d(6, 4), lambda: UpBlock2d(6, 4), lambda: SameBlock2d(6, 4),
                                   lambda: ResBlock2d(6)])
def test_folded_forward_equals_the_plain_layers(block):
    torch.manual_seed(1)
    m = block()
    _randomise_norms(m)
    m.eval()
    x = torch.randn(3, 6, 10, 12)
    plain = m(x)                      # grad enabled: the plain layers
    with torch.inference_mode():
        folded = m(x)
    assert torch.allclose(folded, plain, atol=2e-5, rtol=1e-5), (folded - plain).abs().max()


def test_fold_cache_follows_new_weights_and_stays_out_of_the_state_dict():
    torch.manual_seed(2)
    m = UpBlock2d(4, 4)
    _randomise_norms(m)
    m.eval()
    x = torch.randn(1, 4, 8, 8)  # 8×8 and more: the folded path
    with torch.inference_mode():
        before = m(x)
    other = UpBlock2d(4, 4)
    _randomise_norms(other)
    m.load_state_dict(other.state_dict())
    assert set(m.state_dict()) == set(other.state_dict())
    with torch.inference_mode():
        after = m(x)
    expected = other.eval()(x)
    assert not torch.allclose(after, before) and torch.allclose(after, expected, atol=2e-5)


def test_training_runs_the_plain_layers_and_updates_the_norm():
    torch.manual_seed(3)
    m = SameBlock2d(3, 4).train()
    x = torch.randn(2, 3, 8, 8)
    m(x).sum().backward()
    assert m.norm.weight.grad is not None and m.norm.num_batches_tracked.item() == 1


def test_traced_decode_zeroes_the_borders_as_the_eager_one():
    """Under torch.compile the packed borders are masked instead of written in place (dynamo's eager
    backend traces the same branch, without inductor's compile time)."""
    torch.manual_seed(6)
    y = torch.randn(2, 12, 6, 7)
    eager = zero_unused_phase_borders(y.clone())
    traced = torch.compile(zero_unused_phase_borders, backend="eager", fullgraph=True)(y.clone())
    assert torch.equal(traced, eager)
    assert (eager[:, :3, -1] == 0).all() and (eager[:, 9:, 0] == 0).all() and (eager[:, 3:6, :, 0] == 0).all()
    assert (eager[:, :3, :-1, :-1] == y[:, :3, :-1, :-1]).all()


@pytest.mark.parametrize("channels_last", [False, True])
def test_avct_decoder_tokens_with_one_reference_equal_the_plain_layers(channels_last):
    """The first decoder block run on its audio half with the reference's half once
    (down_res_block_on_split_input) gives the concatenated input's tokens: the same sums, regrouped."""
    from avct.config import AVCTConfig
    from avct.models.avct import AudioVisualCorrelationTransformer

    torch.manual_seed(5)
    avct = AudioVisualCorrelationTransformer(AVCTConfig()).double().eval()
    _randomise_norms(avct)
    if channels_last:
        avct.to(memory_format=torch.channels_last)
    audio = torch.randn(6, 4, 41, dtype=torch.float64)
    feature_map = torch.randn(1, AVCTConfig().feature_channels, 64, 64, dtype=torch.float64)
    with torch.inference_mode():
        fast = avct.decoder_tokens(audio, feature_map)
        with plain_layers():
            plain = avct.decoder_tokens(audio, feature_map)
        # a different map per frame (training, the official per-window forward) takes the plain layers
        per_frame = avct.decoder_tokens(audio, feature_map.expand(6, -1, -1, -1))
    assert fast.shape == (6, AVCTConfig().d_model)
    assert torch.allclose(fast, plain, atol=1e-10, rtol=0)
    assert torch.equal(per_frame, plain)
    assert plain.std() > 0.1  # not a degenerate network
