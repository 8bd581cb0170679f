"""AVCT stage (batched sequential training): inference-identical windows, the sequence forward, over-fitting a
fixed sequence of a real clip through the frozen renderer and D_sync, the ablation switches, export + merge."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from support.stage_helpers import (CHEAP_LAYERS, CHEAP_PERCEPTUAL, TINY_MODEL, Runner, build_stage, drop_factor, fixed_batch,
                            overfit_renderer, overfit_syncnet, seed_all)
from avct.weights import AvctModels, load_models, merge_models, save_models
from avct.config import small_config
from avct.errors import AvctError
from avct.models.avct import AudioVisualCorrelationTransformer
from avct.train.stages import get_stage
from avct.train.stages.avct import AvctSequences, AvctStage, SequenceAVCT

SEQ = 6           # T: the shortest sequence with a D_sync window (frames 3..T-2 -> 2 windows)
STEPS = 40
# Measured on the tiny clip (seed 0, 1 thread, over-fitted tiny renderer and D_sync): the total loss fell
# ~1.85x in 20 steps on an AVX-512 machine but only 1.36x on an AVX2-only one (other kernels, other
# rounding, another trajectory through the GAN terms' first bump); in 40 steps it falls 2.13x there.
OVERFIT_FACTOR = 1.5
OVERRIDES = {**CHEAP_PERCEPTUAL, "seq_len": SEQ, "lr": 1e-3,
             "discriminator": {"scales": [0.25], "block_expansion": 8, "max_features": 32},
             "loss_weights": {"perceptual_layers": CHEAP_LAYERS}}
# The over-fit run weighs L_sync 1 instead of 10: the test's D_sync (40 steps on 16 real windows) rejects the
# tiny renderer's mouths (P_sync ~0.05), and at 10x its slowly moving -log P would hide the rest of Eq. 2.
OVERFIT_OVERRIDES = {**OVERRIDES, "loss_weights": {**OVERRIDES["loss_weights"], "sync": 1.0}}


@pytest.fixture(scope="module")
def inits(tiny_dataset, tmp_path_factory):
    renderer, _ = overfit_renderer(tiny_dataset, tmp_path_factory.mktemp("renderer_weights"))
    syncnet, _ = overfit_syncnet(tiny_dataset, tmp_path_factory.mktemp("syncnet_weights"))
    return {"renderer": renderer, "syncnet": syncnet}


@pytest.fixture(scope="module")
def avct_run(tiny_dataset, inits, tmp_path_factory):
    stage = build_stage(AvctStage, "avct", OVERFIT_OVERRIDES, tiny_dataset, init=inits)
    batch = fixed_batch(stage, [3])
    runner = Runner(stage)
    runner.steps(batch, STEPS)
    out = tmp_path_factory.mktemp("avct_weights")
    stage.export(runner.modules, out)
    return stage, runner, out


def test_registry_finds_the_stage():
    assert get_stage("avct") is AvctStage


def test_sequences_match_the_inference_windows(tiny_dataset):
    from avct.testing.per_frame import window
    from avct.inference.inputs import Speech

    ds = AvctSequences(tiny_dataset, seq_len=SEQ, num_w=5)
    clip = ds.clips[0]
    n = clip.usable_frames
    assert len(ds) == sum(c.usable_frames - SEQ + 1 for c in ds.clips)
    speech = Speech(np.asarray(clip.features[:4 * n]), np.asarray(clip.phoneme_ids[:n]))
    poses = np.asarray(clip.poses)
    for index in (0, n - SEQ):                              # the start and the end of a clip: padded windows
        seed_all(0)
        item = ds[index]
        assert item["frames"].shape == (SEQ, 3, 256, 256) and item["frames"].dtype == torch.uint8
        assert item["windows"].shape == (SEQ, 11) and item["phonemes"].shape == (SEQ + 10,)
        for t in range(SEQ):
            ph, audio, boxes = window(speech, poses, index + t, 5)
            w = item["windows"][t]
            assert np.array_equal(item["phonemes"][w].numpy(), ph)
            assert np.array_equal(item["audio"][w].numpy(), audio)
            assert np.array_equal(item["pose_boxes"][w].numpy().astype(np.float32), boxes)
        frames = np.load(ds.clips[0].folder / "frames.npy")
        assert np.array_equal(item["frames"][0].permute(1, 2, 0).numpy(), frames[index])
        assert torch.equal(item["frame_audio"], item["audio"][5:5 + SEQ])
    independent = AvctSequences(tiny_dataset, seq_len=SEQ, num_w=5, successive=False)
    seed_all(1)
    item = independent[4]
    assert item["windows"].shape == (SEQ, 11) and item["phonemes"].shape == (SEQ * 11,)
    first = AvctSequences(tiny_dataset, seq_len=SEQ, num_w=5, reference_first=True)[7]
    assert torch.equal(first["reference"], first["frames"][0])


def test_sequence_forward_equals_the_per_window_forward(tiny_dataset):
    from avct.train.config import load_config

    cfg = load_config("avct", {"preset": "small", "model_overrides": TINY_MODEL}).model_config().avct
    torch.manual_seed(0)
    avct = AudioVisualCorrelationTransformer(cfg)
    avct.train()
    for _ in range(2):  # give the BatchNorms non-trivial running statistics
        avct.encoder_tokens(torch.randint(0, 41, (8,)), torch.rand(8, 256, 256) * 255)
    avct.eval()
    seed_all(0)
    item = torch.utils.data.default_collate([AvctSequences(tiny_dataset, SEQ, 5)[2]])
    fm = torch.randn(1, cfg.feature_channels, 64, 64)
    with torch.no_grad():
        value, jac = SequenceAVCT(avct)(item["phonemes"], item["audio"], item["pose_boxes"].float(), fm,
                                        item["windows"])
        w = item["windows"][0]
        ref = avct(item["phonemes"][0][w], item["audio"][0][w], item["pose_boxes"][0][w].float(), fm)
    assert torch.allclose(value[0], ref.value, atol=1e-5) and torch.allclose(jac[0], ref.jacobian, atol=1e-5)


def test_avct_overfits_a_fixed_sequence(avct_run, tiny_dataset, inits):
    stage, runner, _ = avct_run
    losses = [o.loss for o in runner.outputs]
    factor = drop_factor(losses)
    print(f"avct over-fit: {losses[0]:.3f} -> {losses[-1]:.3f}, factor {factor:.2f} in {STEPS} steps; "
          f"first {runner.outputs[0].scalars}, last {runner.outputs[-1].scalars}")
    assert all(np.isfinite(losses)) and factor > OVERFIT_FACTOR
    assert set(runner.outputs[0].scalars) == {"perceptual", "equivariance_value", "equivariance_jacobian", "sync",
                                              "seq_gan", "discriminator_seq"}
    assert set(stage.trainable()) == {"avct", "d_seq"}
    assert set(stage.frozen()) >= {"keypoint_detector", "generator", "syncnet", "perceptual"}
    assert not any(p.requires_grad for p in stage.generator.parameters())
    again_stage = build_stage(AvctStage, "avct", OVERFIT_OVERRIDES, tiny_dataset, init=inits)
    again = Runner(again_stage).steps(fixed_batch(again_stage, [3]), 2)
    assert again == losses[:2]                                # deterministic with a seed


def test_export_merge_and_generate(avct_run, inits, tmp_path):
    from avct.inference.pipeline import Pipeline
    from avct.inference.inputs import Reference, Speech

    stage, _, weights = avct_run
    models = load_models(weights)
    assert set(models.components()) == {"keypoint_detector", "generator", "avct"}
    renderer = load_models(inits["renderer"])
    assert all(torch.equal(a, b) for a, b in zip(models.generator.state_dict().values(),
                                                 renderer.generator.state_dict().values()))
    assert models.config.avct.feature_channels == 11 and models.config.avct.d_model == 64
    # a head-motion run's weights + this run's -> everything `avct generate` needs
    torch.manual_seed(0)
    cfg = small_config()
    from avct.weights import build_component

    head = save_models(AvctModels(cfg, head_motion=build_component("head_motion", cfg)), tmp_path / "head")
    merged = load_models(save_models(merge_models([load_models(weights), load_models(head)]), tmp_path / "merged"))
    assert set(merged.components()) == {"keypoint_detector", "generator", "avct", "head_motion"}
    assert merged.config.head_motion == cfg.head_motion and merged.config.avct == models.config.avct
    pipe = Pipeline(merged, device="cpu", channels_last=False)
    clip = stage.dataset().clips[0]
    speech = Speech(np.array(clip.features[:32]), np.array(clip.phoneme_ids[:8]))
    reference = Reference(torch.from_numpy(clip.frames[0].copy()).permute(2, 0, 1)[None].float() / 255,
                          np.asarray(clip.poses[0], np.float64))
    frames = torch.cat(list(pipe.predictions(reference, speech)))
    assert frames.shape == (8, 3, 256, 256) and torch.isfinite(frames).all()


@pytest.mark.parametrize("flag", ["no_phonemes", "no_audio_in_decoder", "no_kp_features_in_decoder",
                                  "reference_image_instead_of_kp_features", "no_bst", "no_dsync", "relative_motion"])
def test_ablations_train(flag, tiny_dataset, inits, tmp_path):
    overrides = dict(OVERRIDES) if flag == "relative_motion" else {**OVERRIDES, flag: True}
    stage = build_stage(AvctStage, "avct", overrides, tiny_dataset, init=inits)
    if flag == "relative_motion":  # read from the config when the field exists; switched directly here
        stage.relative = True
    runner = Runner(stage)
    batch = fixed_batch(stage, [3])
    losses = runner.steps(batch, 1)
    assert np.isfinite(losses[0])
    out = runner.outputs[0]
    avct_cfg = stage.model_config.avct
    if flag == "no_phonemes":
        assert not avct_cfg.use_phonemes and stage.find_unused_parameters
    if flag == "no_audio_in_decoder":
        assert not avct_cfg.use_audio and stage.find_unused_parameters
    if flag == "no_kp_features_in_decoder":
        assert not avct_cfg.use_kp_features
    if flag == "no_bst":
        assert set(runner.modules) == {"avct"} and "sync" not in out.scalars and "seq_gan" not in out.scalars
        assert batch["phonemes"].shape == (1, SEQ * 11)
    if flag == "no_dsync":
        assert "sync" not in out.scalars and stage.syncnet is None
    if flag == "relative_motion":
        assert torch.equal(batch["reference"][0], batch["frames"][0, 0])
    stage.export(runner.modules, tmp_path)
    exported = load_models(tmp_path)
    assert exported.config.avct == avct_cfg
    assert (tmp_path / "reference_encoder.safetensors").is_file() == (flag == "reference_image_instead_of_kp_features")


def test_avct_stage_needs_its_frozen_networks(tiny_dataset, inits):
    with pytest.raises(AvctError, match="--renderer"):
        build_stage(AvctStage, "avct", OVERRIDES, tiny_dataset, init={"syncnet": inits["syncnet"]})
    with pytest.raises(AvctError, match="--syncnet"):
        build_stage(AvctStage, "avct", OVERRIDES, tiny_dataset, init={"renderer": inits["renderer"]})
    stage = build_stage(AvctStage, "avct", {**OVERRIDES, "no_dsync": True}, tiny_dataset,
                        init={"renderer": inits["renderer"]})
    assert stage.syncnet is None


def test_official_checkpoint_as_the_frozen_renderer(official_checkpoint_dir, tiny_dataset):
    """The official generator.ckpt (kp_detector + generator) is accepted as E_kd/E_r; the AVCT's decoder
    input follows the renderer's 35-channel feature map whatever the model preset says."""
    stage = build_stage(AvctStage, "avct", {**OVERRIDES, "no_dsync": True}, tiny_dataset,
                        init={"renderer": official_checkpoint_dir / "generator.ckpt"})
    assert stage.model_config.avct.feature_channels == 35
    assert stage.model_config.keypoint_detector.block_expansion == 32
    official = load_models(official_checkpoint_dir)
    assert all(torch.equal(a, b) for a, b in zip(stage.keypoint_detector.state_dict().values(),
                                                 official.keypoint_detector.state_dict().values()))


KEYPOINT_ONLY = {**OVERRIDES, "no_dsync": True, "lr": 1e-3,
                 "loss_weights": {"perceptual": 0.0, "pixel": 0.0, "sync": 0.0, "seq_gan": 0.0,
                                  "discriminator_seq": 0.0}}


def test_keypoint_only_training_never_renders(tiny_dataset, inits, monkeypatch):
    """No image loss: the AVCT learns the frozen detector's keypoints through the equivariance terms alone,
    and the renderer is never called (the bundled weights' CPU recipe)."""
    stage = build_stage(AvctStage, "avct", KEYPOINT_ONLY, tiny_dataset, init={"renderer": inits["renderer"]})
    assert not stage.render and stage.d_seq is None and stage.perceptual is None and stage.pixel is None

    def no_render(*args, **kwargs):
        raise AssertionError("the renderer must not run without an image loss")

    monkeypatch.setattr(stage.generator, "render", no_render)
    runner = Runner(stage)
    losses = runner.steps(fixed_batch(stage, [3]), 15)
    assert set(runner.outputs[0].scalars) == {"equivariance_value", "equivariance_jacobian"}
    assert all(np.isfinite(losses)) and drop_factor(losses) > 1.5


def test_pixel_loss_renders(tiny_dataset, inits):
    overrides = {**KEYPOINT_ONLY, "loss_weights": {**KEYPOINT_ONLY["loss_weights"], "pixel": 5.0}}
    stage = build_stage(AvctStage, "avct", overrides, tiny_dataset, init={"renderer": inits["renderer"]})
    assert stage.render and stage.pixel is not None and stage.pixel.weight == 5.0
    runner = Runner(stage)
    runner.steps(fixed_batch(stage, [3]), 1)
    assert set(runner.outputs[0].scalars) == {"pixel", "equivariance_value", "equivariance_jacobian"}
