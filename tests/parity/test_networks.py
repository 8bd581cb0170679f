"""Each network, loaded from official-layout checkpoints filled by rule `qr`, against the official
outputs (parity pack §2.5-2.9; tolerances from its §3)."""
import numpy as np
import torch

from avct.models.keypoints import Keypoints
from avct.models.motion import relative_motion
from support.parity_data import golden


def close(actual, expected, atol, what):
    actual = actual.detach().float().numpy() if isinstance(actual, torch.Tensor) else actual
    err = float(np.abs(actual - expected).max())
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert err <= atol, f"{what}: max |Δ| {err:.3g} > {atol}"
    return err


def test_deterministic_buffers(official_models, parity):
    g = golden(parity, "deterministic_buffers.npz")
    m = official_models
    close(m.keypoint_detector.down.weight, g["kp_detector/down.weight"], 1e-8, "kp down")
    close(m.generator.dense_motion_network.down.weight, g["generator/dense_motion_network.down.weight"], 1e-8, "dm")
    close(m.avct.down_pose.weight, g["ph2kp/down_pose.weight"], 1e-8, "down_pose")
    close(m.avct.pos_enc.pos_table, g["ph2kp/pos_enc.pos_table"], 0, "pos_table")


def test_keypoint_detector(official_models, parity):
    g = golden(parity, "kp_detector.npz")
    with torch.no_grad():
        out = official_models.keypoint_detector.detect(torch.from_numpy(g["image"]))
    close(out.keypoints.value, g["value"], 1e-5, "value")
    close(out.keypoints.jacobian, g["jacobian"], 1e-5, "jacobian")
    close(out.feature_map, g["feature_map"], 2e-5, "feature_map")
    close(out.heatmap_logits, g["heatmap_logits"], 2e-5, "heatmap_logits")
    close(out.jacobian_map, g["jacobian_map"], 2e-5, "jacobian_map")


def test_generator(official_models, parity):
    g = golden(parity, "generator.npz")
    image = torch.from_numpy(golden(parity, "kp_detector.npz")["image"])
    src = Keypoints(torch.from_numpy(g["kp_source_value"]), torch.from_numpy(g["kp_source_jacobian"]))
    drv = Keypoints(torch.from_numpy(g["kp_driving_value"]), torch.from_numpy(g["kp_driving_jacobian"]))
    with torch.no_grad():
        out = official_models.generator(image, src, drv)
    for name, atol in [("prediction", 5e-5), ("occlusion_map", 1e-5), ("mask", 1e-5), ("deformation", 1e-5),
                       ("sparse_deformed", 1e-4), ("deformed", 5e-4)]:
        close(out[name], g[name], atol, name)


def test_avct_transformer(official_models, parity):
    g = golden(parity, "ph2kp.npz")
    avct = official_models.avct
    ph, audio, pose = (torch.from_numpy(g[k]) for k in ("ph", "audio", "pose"))
    fmap = torch.from_numpy(g["feature_map"])
    b, w = ph.shape
    with torch.no_grad():
        close(avct.down_pose(pose.reshape(b * w, 1, 256, 256)).view(b, w, 64, 64), g["pose64"], 1e-3, "pose64")
        enc = avct.encoder_tokens(ph.reshape(-1), pose.reshape(b * w, 256, 256)).view(b, w, -1)
        dec = avct.decoder_tokens(audio.reshape(b * w, 4, 41), fmap).view(b, w, -1)
        close(enc, g["encoder_input"], 1e-3, "encoder_input")
        close(dec, g["decoder_query"], 1e-4, "decoder_query")
        close(avct.correlate(enc, dec, all_layers=True), g["decoder_stack"], 1e-4, "decoder_stack")
        kp = avct(ph, audio, pose, fmap)  # the official per-window interface
    close(kp.value, g["value"], 1e-4, "value")
    close(kp.jacobian, g["jacobian"], 1e-4, "jacobian")


def test_audio_branch_intermediate(official_models, parity):
    g = golden(parity, "ph2kp.npz")
    with torch.no_grad():
        a = official_models.avct.audio_embedding(torch.from_numpy(g["audio"][0]).unsqueeze(1))
    close(a, g["audio_embedding_w0"], 1e-4, "audio_embedding")


def test_head_motion(official_models, parity):
    g = golden(parity, "audio2pose.npz")
    hm = official_models.head_motion
    img, audio = torch.from_numpy(g["img"]), torch.from_numpy(g["audio"])
    with torch.no_grad():
        em_pose = hm.em_pose(img)
        em_audio = hm.em_audio(audio.reshape(-1, 1, 4, 41)).view(1, -1, 256)
        raw = hm(img, audio)
        poses = hm.denormalize(raw)[0]
    scale = np.abs(g["em_pose"]).max()
    close(em_pose / scale, g["em_pose"] / scale, 1e-5, "em_pose (relative)")
    close(em_audio, g["em_audio"], 1e-3, "em_audio")
    scale0 = np.abs(g["out_raw"][:, 0]).max()
    close(raw[:, 0] / scale0, g["out_raw"][:, 0] / scale0, 1e-5, "out_raw[0] (relative)")
    close(raw[:, 1:], g["out_raw"][:, 1:], 1e-4, "out_raw[1:]")
    close(poses[1:, :3], g["poses_denorm"][1:, :3], 1e-4, "rotation")
    close(poses[1:, 3:], g["poses_denorm"][1:, 3:], 1e-2, "translation")
    np.testing.assert_array_equal(g["minv"], hm.pose_min.numpy())
    np.testing.assert_array_equal(g["maxv"], hm.pose_max.numpy())


def test_head_motion_streaming_equals_whole(official_models, parity):
    """Chunked LSTM roll-out (used for long audio) equals one pass."""
    g = golden(parity, "audio2pose.npz")
    hm = official_models.head_motion
    img, audio = torch.from_numpy(g["img"]), torch.from_numpy(g["audio"])
    with torch.no_grad():
        whole = hm(img, audio)
        first, h, state = hm.initial_state(img)
        parts = [first[:, None]]
        for s in range(0, 50, 7):
            out, h, state = hm.step(audio[:, s:s + 7], h, state)
            parts.append(out)
    close(torch.cat(parts, 1)[:, 1:], whole[:, 1:].numpy(), 1e-6, "chunked")


def test_relative_motion_transfer(parity):
    g = golden(parity, "end_to_end.npz")
    src = Keypoints(torch.from_numpy(g["kp_source_value"]), torch.from_numpy(g["kp_source_jacobian"]))
    drv = Keypoints(torch.from_numpy(g["ph2kp_value"]), torch.from_numpy(g["ph2kp_jacobian"]))
    out = relative_motion(src, drv, drv[0:1])
    close(out.value, g["kp_norm_value"], 5e-4, "value")
    close(out.jacobian, g["kp_norm_jacobian"], 1e-3, "jacobian")
    # analytic: the first frame maps exactly onto the source keypoints
    close(out.value[0:1], g["kp_source_value"], 1e-6, "frame 0 = source")
