"""Checkpoint loading: official and FOMM layouts, our safetensors format, and refusals."""
import json
import os

import pytest
import torch

from avct.weights.official import load_official
from avct.weights import load_models, save_models
from avct.cli import main
from avct.config import ModelConfig, small_config
from avct.errors import AvctError


class _Evil:
    """A pickle that would run a shell command when unpickled without weights_only."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _small_models():
    from avct.weights import COMPONENTS, AvctModels, build_component

    cfg = small_config()
    models = AvctModels(cfg)
    torch.manual_seed(0)
    for name in COMPONENTS:
        setattr(models, name, build_component(name, cfg))
    return models.eval()


def test_refuses_code_execution_pickle(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "generator.ckpt"
    torch.save({"ph2kp": _Evil(marker)}, path)
    with pytest.raises(AvctError, match="code execution"):
        load_models(path)
    assert not marker.exists()
    assert main(["convert", str(path), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "code execution" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not marker.exists()


def test_wrong_keys_and_shapes(official_checkpoint_dir, tmp_path):
    good = torch.load(official_checkpoint_dir / "generator.ckpt", weights_only=True)
    wrong_top = tmp_path / "a" / "generator.ckpt"
    wrong_top.parent.mkdir()
    torch.save({"model": good["ph2kp"]}, wrong_top)
    with pytest.raises(AvctError, match="not an AVCT/FOMM checkpoint"):
        load_official(wrong_top, None)
    renamed = dict(good["ph2kp"])
    renamed["kp.weights"] = renamed.pop("kp.weight")
    bad_keys = tmp_path / "b.ckpt"
    torch.save({"ph2kp": renamed}, bad_keys)
    with pytest.raises(AvctError, match=r"missing 1 key.*kp\.weight.*unexpected 1 key.*kp\.weights"):
        load_official(bad_keys, None)
    reshaped = dict(good["ph2kp"])
    reshaped["kp.weight"] = torch.zeros(21, 512)
    bad_shape = tmp_path / "c.ckpt"
    torch.save({"ph2kp": reshaped}, bad_shape)
    with pytest.raises(AvctError, match=r"kp\.weight has shape \(21, 512\), expected \(20, 512\)"):
        load_official(bad_shape, None)


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(AvctError, match="junk.ckpt"):
        load_models(junk)
    with pytest.raises(AvctError, match="not found"):
        load_models(tmp_path / "nope")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(AvctError, match="neither avct weights"):
        load_models(empty_dir)


def test_fomm_vox_layout_and_module_prefix(official_checkpoint_dir, tmp_path):
    """A FOMM vox-256 checkpoint (with discriminator/optimiser entries, DataParallel prefixes) gives the renderer."""
    good = torch.load(official_checkpoint_dir / "generator.ckpt", weights_only=True)
    vox = {
        "kp_detector": {f"module.{k}": v for k, v in good["kp_detector"].items()},
        "generator": good["generator"],
        "discriminator": {"down_blocks.0.conv.weight": torch.zeros(1)},
        "optimizer_generator": {"state": {}, "param_groups": [{"lr": 2e-4, "params": [0, 1]}]},
        "epoch": 99,
    }
    path = tmp_path / "vox-cpk.pth.tar"
    torch.save(vox, path)
    models = load_models(path)
    assert set(models.components()) == {"keypoint_detector", "generator"}
    for k, v in models.generator.state_dict().items():
        assert torch.equal(v, good["generator"][k])


def test_safetensors_round_trip_and_convert(official_checkpoint_dir, official_models, tmp_path):
    assert main(["convert", str(official_checkpoint_dir), "-o", str(tmp_path / "w")]) == 0
    meta = json.loads((tmp_path / "w" / "config.json").read_text())
    assert meta["format"] == "avct-weights" and len(meta["components"]) == 4
    loaded = load_models(tmp_path / "w")
    for name, module in official_models.components().items():
        other = getattr(loaded, name).state_dict()
        for k, v in module.state_dict().items():
            assert torch.equal(v, other[k]), (name, k)
    assert not list((tmp_path / "w").glob(".*"))  # no temp files left


def test_small_config_round_trip(tmp_path):
    models = _small_models()
    save_models(models, tmp_path)
    loaded = load_models(tmp_path)
    assert loaded.config == models.config
    assert ModelConfig.from_dict(json.loads(json.dumps(models.config.to_dict()))) == models.config
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        assert torch.equal(models.keypoint_detector(x).value, loaded.keypoint_detector(x).value)
    with pytest.raises(AvctError, match="unknown"):
        ModelConfig.from_dict({"avct": {"nonsense": 1}})


def test_half_storage_round_trip_and_convert_with_syncnet(small_checkpoint_dir, tmp_path, capsys):
    """--half stores fp32 weights as fp16 (half the bytes), keeps what would overflow fp16 as fp32, and
    loads back as fp32 within fp16 rounding; --syncnet puts a D_sync beside the weights."""
    from safetensors import safe_open

    from avct.weights.files import half_tensor
    from avct.models.syncnet import SyncNet, SyncNetConfig
    from avct.weights.syncnet import load_syncnet, save_syncnet

    big = torch.tensor([1.0, 1e6])
    assert half_tensor(big).dtype == torch.float32                     # 1e6 overflows fp16
    assert half_tensor(torch.tensor([0.5, -2.0])).dtype == torch.float16
    assert half_tensor(torch.tensor([3], dtype=torch.int64)).dtype == torch.int64

    torch.manual_seed(0)
    sync_dir = save_syncnet(SyncNet(SyncNetConfig()), tmp_path / "sync")
    out = tmp_path / "half"
    assert main(["convert", str(small_checkpoint_dir), "--half", "--syncnet", str(sync_dir), "-o", str(out)]) == 0
    assert "syncnet" in capsys.readouterr().out
    full, half = load_models(small_checkpoint_dir), load_models(out)
    for name, module in full.components().items():
        path = out / f"{name}.safetensors"
        assert path.stat().st_size < 0.55 * (small_checkpoint_dir / f"{name}.safetensors").stat().st_size
        with safe_open(str(path), "pt") as f:
            assert {f.get_tensor(k).dtype for k in f.keys()} <= {torch.float16, torch.float32, torch.int64}
        ref = module.state_dict()
        for key, value in getattr(half, name).state_dict().items():
            assert value.dtype == ref[key].dtype
            if value.is_floating_point():
                assert torch.allclose(value, ref[key], rtol=1e-3, atol=1e-4), key
    sync_ref, sync_half = load_syncnet(sync_dir), load_syncnet(out)
    for (key, a), b in zip(sync_ref.state_dict().items(), sync_half.state_dict().values()):
        if a.is_floating_point():
            assert torch.allclose(a, b, rtol=1e-3, atol=1e-4), key


def test_one_way_in_names_every_source(official_checkpoint_dir, tmp_path):
    """avct.weights.load_models: None and "default" are the bundled weights; a list merges its sources,
    later ones overriding (the official files bring the paper's four networks, the bundled the lips)."""
    from avct.weights import COMPONENTS, PAPER_COMPONENTS, default_weights_dir

    def same(a, b):
        sa, sb = a.state_dict(), b.state_dict()
        return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)

    bundled = load_models()
    assert set(bundled.components()) == set(COMPONENTS)
    assert all(same(m, load_models("default").components()[n]) for n, m in bundled.components().items())
    assert all(same(m, load_models(default_weights_dir()).components()[n]) for n, m in bundled.components().items())
    official = load_models(official_checkpoint_dir)
    merged = load_models([None, official_checkpoint_dir])
    assert all(same(getattr(merged, n), getattr(official, n)) for n in PAPER_COMPONENTS)
    assert same(merged.lip_aperture, bundled.lip_aperture)
    assert merged.config.generator == official.config.generator and merged.config.lip_aperture == bundled.config.lip_aperture
    with pytest.raises(AvctError, match="checkpoint not found"):
        load_models(tmp_path / "missing")
