"""Training engine: bit-exact kill-and-resume, 2-process DDP == 1 process, checkpoints, logs,
config validation, the stage registry and the command line. All on CPU with the head-motion stage."""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from avct.weights import load_models
from avct.errors import AvctError
from avct.train.config import PRESET_NAMES, STAGE_NAMES, load_config, preset, to_yaml
from avct.train.checkpoint_files import MODULES_FILE, STATE_FILE
from avct.train.engine import train
from avct.train.run_dir import CHECKPOINTS_DIR, latest_checkpoint, resolve_init
from avct.train.sampling import StepBatches
from avct.train.seeding import seed_everything
from avct.train.stage import AmpContext

TINY_MODEL = {"head_motion": {"widths": [8, 16, 32, 64], "embedding_dim": 32, "hidden_size": 32}}
# DDP vs one process after 3 steps: relative L2 difference of the weight updates (measured 5e-6..2e-5:
# float sums run in another order; 0.74 without synchronised BatchNorm) and largest relative difference
# of a BatchNorm running statistic (measured 5e-7..1.3e-5; 0.23 without synchronised BatchNorm).
DDP_UPDATE_RTOL = 1e-3
DDP_BUFFER_RTOL = 1e-3


def small_config(**overrides):
    return load_config("headmotion", {"preset": "small", "seq_len": 6, "batch_size": 2, "steps": 6, "log_every": 1,
                                      "save_every": 2, "lr": 1e-3, "model_overrides": TINY_MODEL, **overrides})


def run_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(latest_checkpoint(run_dir) / MODULES_FILE))


# ---- resume ----------------------------------------------------------------------------------------------
def test_kill_and_resume_is_bit_identical(tiny_dataset, tmp_path, monkeypatch):
    config = small_config()
    straight = train("headmotion", config, tiny_dataset, tmp_path / "straight", progress=False)
    assert straight.step == 6 and straight.finished

    half = train("headmotion", config, tiny_dataset, tmp_path / "resumed", max_steps=3, progress=False)
    assert half.step == 3 and not half.finished
    assert (tmp_path / "resumed" / CHECKPOINTS_DIR / "latest").read_text().strip() == "step_0000003"
    # the second half reuses RUN_DIR/config.yaml and run.json, and loads data with a worker process
    rest = train("headmotion", dataclasses.replace(config, num_workers=1), None, tmp_path / "resumed",
                 resume=True, progress=False)
    assert rest.step == 6 and rest.finished
    assert rest.losses == straight.losses[3:]

    a, b = run_weights(tmp_path / "straight"), run_weights(tmp_path / "resumed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    exported_a = load_file(str(tmp_path / "straight" / "weights" / "head_motion.safetensors"))
    exported_b = load_file(str(tmp_path / "resumed" / "weights" / "head_motion.safetensors"))
    assert all(torch.equal(exported_a[k], exported_b[k]) for k in exported_a)
    state_a = torch.load(latest_checkpoint(tmp_path / "straight") / STATE_FILE, weights_only=True)
    state_b = torch.load(latest_checkpoint(tmp_path / "resumed") / STATE_FILE, weights_only=True)
    moments = zip(state_a["optimizers"]["head_motion"]["state"].values(),
                  state_b["optimizers"]["head_motion"]["state"].values())
    assert all(torch.equal(x["exp_avg_sq"], y["exp_avg_sq"]) for x, y in moments)

    # Ctrl-C (SIGINT) during step 2: the step finishes, a checkpoint is saved, --resume goes on from it
    from avct.train.stages.headmotion import HeadMotionStage

    original, calls = HeadMotionStage.train_step, []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(HeadMotionStage, "train_step", interrupted)
    stopped = train("headmotion", config, tiny_dataset, tmp_path / "interrupted", progress=False)
    monkeypatch.setattr(HeadMotionStage, "train_step", original)
    assert stopped.step == 2 and not stopped.finished
    train("headmotion", None, None, tmp_path / "interrupted", resume=True, progress=False)
    c = run_weights(tmp_path / "interrupted")
    assert all(torch.equal(a[k], c[k]) for k in a)

    # the run directory: resolved config, checkpoints, TensorBoard events with one value per step
    run = tmp_path / "resumed"
    resolved = dataclasses.replace(config, num_workers=1).pinned_perceptual()   # `perceptual: auto` decided
    assert load_config("headmotion", run / "config.yaml") == resolved
    assert sorted(p.name for p in (run / CHECKPOINTS_DIR).glob("step_*")) == [
        "step_0000002", "step_0000003", "step_0000004", "step_0000006"]
    assert list((run / "logs").glob("events.out.tfevents.*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "logs")).Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4, 5, 6]
    assert {"train/l1_first", "train/l1_sequence", "lr/head_motion"} <= set(events.Tags()["scalars"])
    # the export is an avct weights dir; a later stage may name the run dir itself
    assert resolve_init("headmotion", run) == run / "weights"
    assert load_models(run / "weights").head_motion is not None


def test_run_dir_guards(tiny_dataset, tmp_path):
    config = small_config(steps=1)
    train("headmotion", config, tiny_dataset, tmp_path / "run", progress=False)
    with pytest.raises(AvctError, match="already holds a training run") as e:
        train("headmotion", config, tiny_dataset, tmp_path / "run", progress=False)
    with pytest.raises(AvctError, match=r"differs from .*config.yaml in lr") as e:
        train("headmotion", dataclasses.replace(config, lr=5e-4), tiny_dataset, tmp_path / "run", resume=True)
    assert "\n" not in str(e.value)
    # resuming a finished run does nothing and keeps its weights
    again = train("headmotion", dataclasses.replace(config, log_every=5), None, tmp_path / "run", resume=True,
                  progress=False)
    assert again.step == 1 and again.finished and again.losses == []


def test_data_order_depends_only_on_seed_and_step():
    full = list(StepBatches(10, 4, 0, 1, seed=3, start=0, stop=8))
    assert list(StepBatches(10, 4, 0, 1, seed=3, start=5, stop=8)) == full[5:]
    # two processes: rank r gets the r-th half of every global batch
    halves = [list(StepBatches(10, 4, r, 2, seed=3, start=0, stop=8)) for r in (0, 1)]
    assert [h0 + h1 for h0, h1 in zip(*halves)] == full
    # every epoch of 10 items is a permutation
    positions = [idx for batch in full for _, idx in batch][:20]
    assert sorted(positions[:10]) == list(range(10)) and sorted(positions[10:]) == list(range(10))
    assert positions[:10] != positions[10:]


# ---- DDP -------------------------------------------------------------------------------------------------
def test_two_process_ddp_matches_one_process(tiny_dataset, tmp_path):
    config = small_config(steps=3, save_every=3)
    yaml_path = tmp_path / "config.yaml"
    yaml_path.write_text(to_yaml(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "avct.cli.train", "headmotion", "--config", str(yaml_path), "--data", str(tiny_dataset),
           "--out", str(tmp_path / "ddp"), "--device", "cpu", "-q"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("finished at step 3") == 1  # rank 0 alone reports

    train("headmotion", config, tiny_dataset, tmp_path / "single", device="cpu", progress=False)
    ddp, single = run_weights(tmp_path / "ddp"), run_weights(tmp_path / "single")
    seed_everything(config.seed)  # the initial weights, as the engine builds them
    from avct.models.head_motion import HeadMotionPredictor

    init = {f"head_motion.{k}": v for k, v in HeadMotionPredictor(config.model_config().head_motion).state_dict().items()}
    params = [k for k in single if single[k].is_floating_point() and "running_" not in k]
    diff = sum(float(((ddp[k].double() - single[k].double()) ** 2).sum()) for k in params) ** 0.5
    update = sum(float(((single[k].double() - init[k].double()) ** 2).sum()) for k in params) ** 0.5
    buffers = [k for k in single if "running_" in k]
    buffer_rel = max(float((ddp[k] - single[k]).abs().max() / single[k].abs().max().clamp_min(1e-12)) for k in buffers)
    print(f"DDP vs single process after 3 steps: update rel. diff {diff / update:.2e}, "
          f"max |dW| {max(float((ddp[k] - single[k]).abs().max()) for k in params):.2e}, BN stats rel. {buffer_rel:.2e}")
    assert update > 1e-3  # the weights did move
    assert diff / update < DDP_UPDATE_RTOL
    assert buffer_rel < DDP_BUFFER_RTOL
    assert all(torch.equal(ddp[k], single[k]) for k in single if not single[k].is_floating_point())
    assert load_models(tmp_path / "ddp" / "weights").head_motion is not None


# ---- mixed precision ---------------------------------------------------------------------------------------
def test_grad_scaler_updates_once_per_iteration():
    """Two optimisers, both backward passes before both steps (a GAN iteration): the second step must
    unscale with the scale its gradients were made with, and the scale must back off once."""
    amp = AmpContext(torch.device("cpu"), torch.float16)
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt_a, opt_b = torch.optim.SGD([a], lr=0.1), torch.optim.SGD([b], lr=0.1)
    start = amp.scaler.get_scale()
    amp.backward((a * float("inf")).sum())
    amp.backward((b * 2).sum())
    amp.step(opt_a)   # overflow: skipped
    amp.step(opt_b)
    amp.update()
    assert torch.equal(a.detach(), torch.ones(2))
    assert torch.allclose(b.detach(), torch.full((2,), 0.8))
    assert amp.scaler.get_scale() == start / 2


# ---- config -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_presets_round_trip_through_yaml(stage, tmp_path):
    for name in PRESET_NAMES:
        config = preset(stage, name)
        path = tmp_path / f"{stage}-{name}.yaml"
        path.write_text(to_yaml(config))
        assert load_config(stage, path) == config
        assert load_config(stage, name) == config
    assert preset(stage, "small").model_config().head_motion.hidden_size == 128


def test_paper_values():
    avct = preset("avct", "official")
    assert (avct.lr, avct.weight_decay, avct.seq_len) == (2e-5, 2e-7, 24)
    w = avct.loss_weights
    assert (w.sync, w.perceptual, w.equivariance_value, w.equivariance_jacobian) == (10, 1, 10, 10)
    renderer = preset("renderer", "official")
    assert (renderer.lr, renderer.betas, renderer.scales) == (2e-4, (0.5, 0.999), (1, 0.5, 0.25, 0.125))
    assert renderer.loss_weights.perceptual == (10,) * 5 and renderer.transform.points_tps == 5
    assert preset("headmotion", "official").lr == 1e-4 and preset("syncnet", "official").lr == 1e-4
    ablated = load_config("avct", {"no_phonemes": True, "no_audio_in_decoder": True}).model_config().avct
    assert (ablated.use_phonemes, ablated.use_audio, ablated.use_kp_features) == (False, False, True)


def test_yaml_overrides_a_preset(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("preset: small\nlr: 2e-5\nloss_weights:\n  first_pose: 3\n")
    config = load_config("headmotion", path)
    assert config.lr == 2e-5 and config.model == "small" and config.loss_weights.first_pose == 3.0
    assert config.loss_weights.pose == 1.0 and config.seq_len == preset("headmotion", "small").seq_len


@pytest.mark.parametrize("data, message", [
    ({"lr": -1}, "lr must be > 0, got -1"),
    ({"nope": 1}, "unknown field nope"),
    ({"batch_size": "four"}, "batch_size must be an integer, got str 'four'"),
    ({"batch_size": 2.5}, "batch_size must be an integer"),
    ({"sync_batchnorm": "yes"}, "sync_batchnorm must be true or false"),
    ({"loss_weights": {"first_pose": -1}}, "loss_weights.first_pose must be >= 0, got -1"),
    ({"loss_weights": {"pos": 1}}, "unknown field loss_weights.pos"),
    ({"loss_weights": 3}, "loss_weights must be a mapping"),
    ({"amp": "fp8"}, "amp must be one of 'none', 'bf16', 'fp16', got 'fp8'"),
    ({"betas": [0.9]}, "betas must have 2 entries"),
    ({"betas": [0.9, 1.5]}, "betas must be in [0, 1), got [0.9, 1.5]"),
    ({"seq_len": 1}, "seq_len must be >= 2"),
    ({"model_overrides": {"head_motion": {"bogus": 1}}}, "invalid model config"),
    ({"model": "huge"}, "model must be one of"),
    ({"stage": "renderer"}, "config for the 'renderer' stage"),
    ({"preset": "huge"}, "preset must be one of"),
])
def test_config_errors_are_one_line(data, message):
    with pytest.raises(AvctError) as e:
        load_config("headmotion", data)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_config_objects_are_validated_too():
    config = preset("headmotion", "small")
    assert load_config("headmotion", config) == config
    for bad, message in [(dataclasses.replace(config, batch_size=0), "batch_size must be > 0, got 0"),
                         (dataclasses.replace(config, lr="fast"), "lr must be a number, got str 'fast'")]:
        with pytest.raises(AvctError, match=message):
            load_config("headmotion", bad)
    with pytest.raises(AvctError, match="not a config for the avct stage"):
        load_config("avct", config)


def test_config_file_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [1,\nsteps: 3\n")
    for spec, message in [(bad, "not valid YAML"), ("large", "neither a preset"), (tmp_path / "none.yaml", "neither")]:
        with pytest.raises(AvctError, match=message) as e:
            load_config("headmotion", spec)
        assert "\n" not in str(e.value)
    with pytest.raises(AvctError, match="unknown training stage"):
        load_config("lipsync", "small")


def test_perceptual_choice(tmp_path, monkeypatch):
    monkeypatch.delenv("AVCT_VGG19_WEIGHTS", raising=False)
    assert preset("renderer", "small").perceptual_choice() == ("inception", None)   # no VGG-19: the default
    assert preset("avct", "official").perceptual_choice() == ("inception", None)
    assert load_config("renderer", {"vgg_fallback": "random"}).perceptual_choice() == ("random-vgg", None)
    assert load_config("renderer", {"perceptual": "random-vgg"}).perceptual_choice() == ("random-vgg", None)
    with pytest.raises(AvctError, match="perceptual: vgg19 needs ImageNet VGG-19 weights"):
        load_config("renderer", {"perceptual": "vgg19"}).perceptual_choice()
    with pytest.raises(AvctError, match="perceptual must be one of"):
        load_config("renderer", {"perceptual": "resnet"})
    weights = tmp_path / "vgg19.pth"
    weights.write_bytes(b"x")
    monkeypatch.setenv("AVCT_VGG19_WEIGHTS", str(weights))
    assert preset("renderer", "small").perceptual_choice() == ("vgg19", weights)       # given: FOMM's VGG
    assert load_config("renderer", {"vgg_fallback": "random"}).perceptual_choice() == ("vgg19", weights)
    assert load_config("renderer", {"perceptual": "inception"}).perceptual_choice() == ("inception", None)
    monkeypatch.setenv("AVCT_VGG19_WEIGHTS", str(tmp_path / "missing.pth"))
    with pytest.raises(AvctError, match="VGG-19 weights not found"):
        preset("renderer", "small").perceptual_choice()


def test_a_run_keeps_its_perceptual_network(tiny_dataset, tmp_path, monkeypatch):
    """`auto` is decided when the run starts and saved as such: VGG-19 weights appearing later do not
    switch a resumed run's loss (with the same --config, the change is refused, as any config change)."""
    import yaml

    monkeypatch.delenv("AVCT_VGG19_WEIGHTS", raising=False)
    train("headmotion", small_config(), tiny_dataset, tmp_path / "run", max_steps=1, progress=False)
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["perceptual"] == "inception"
    weights = tmp_path / "vgg19.pth"
    weights.write_bytes(b"x")
    monkeypatch.setenv("AVCT_VGG19_WEIGHTS", str(weights))
    with pytest.raises(AvctError, match="perceptual \\('inception' -> 'vgg19'\\)"):
        train("headmotion", small_config(), None, tmp_path / "run", resume=True, max_steps=2, progress=False)
    resumed = train("headmotion", None, None, tmp_path / "run", resume=True, max_steps=2, progress=False)
    assert resumed.step == 2
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["perceptual"] == "inception"


# ---- registry and command line -----------------------------------------------------------------------------
def test_stage_registry(monkeypatch):
    from avct.train import stages
    from avct.train.stages.headmotion import HeadMotionStage

    assert list(stages.STAGE_MODULES) == list(STAGE_NAMES)
    assert stages.get_stage("headmotion") is HeadMotionStage
    monkeypatch.setitem(stages.STAGE_MODULES, "renderer", "not_written_yet")
    with pytest.raises(AvctError, match="not available in this build"):
        stages.get_stage("renderer")


def test_cli_errors_are_one_line(tiny_dataset, tmp_path, capsys):
    from avct.cli.train import main

    assert main(["headmotion", "--config", "small", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("avct: error: dataset directory not found") and "\n" not in err
    assert main(["headmotion", "--data", str(tiny_dataset), "--out", str(tmp_path / "r")]) == 1
    assert "no --config given" in capsys.readouterr().err
