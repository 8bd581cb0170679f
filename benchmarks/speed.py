"""Inference speed and memory at the official model size, measured in one run on the same inputs.

    .venv/bin/python benchmarks/speed.py            # full: fps, speed-ups, PSNR, peak memory 10 s vs 10 min
    .venv/bin/python benchmarks/speed.py --quick    # < 1 min: fps and PSNR only
    .venv/bin/python benchmarks/speed.py --outputs  # the sharp full-photo path vs the classic 256² output
    .venv/bin/python benchmarks/speed.py --device cuda

Weights follow the parity fill rule (no trained official-size weights ship here); speed does not depend
on weight values. Inputs: a real photo (cropped, pose estimated) and real speech with reference phonemes.
The "per-frame" baseline is the official loop's structure (avct.testing.per_frame): keypoint detector, window
building, AVCT and full generator per frame, batch 1.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AVCT_SHARED", ROOT.parent / "shared"))
IMAGE = SHARED / "data" / "image" / "obama_frontal_facerec.jpg"
SPEECH = SHARED / "data" / "phoneme_ref" / "ByronDorgan1.wav"
PHOTO_512 = ROOT / "examples" / "astronaut.png"  # 512 x 512: the sharp path's output size


def load_inputs(npz: str | None = None):
    """The real inputs, or the same inputs prepared earlier (``--save-inputs``) for a machine without the
    front-end's packages (e.g. a bare GPU box)."""
    from avct.inference.inputs import Reference, Speech, load_reference, load_speech

    if npz:
        with np.load(npz) as f:
            return (Reference(torch.from_numpy(f["image"]), f["pose"]), Speech(f["features"], f["phonemes"]))
    return load_reference(IMAGE), load_speech(SPEECH, phonemes=SPEECH.with_suffix(".json"))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_frames(make_iter, n: int, device: torch.device, warmup: int | None = None) -> tuple[float, np.ndarray]:
    """fps over the batches that cover n frames (every frame made counts) after a warm-up run of `warmup`
    batches (None: a whole pass, so that every batch shape has met its kernels once), plus the first n
    frames as float arrays."""
    for _ in itertools.islice(make_iter(), warmup):
        pass
    sync(device)
    start = time.perf_counter()
    out = []
    for batch in make_iter():
        out.append(batch.float().cpu())
        if sum(len(b) for b in out) >= n:
            break
    sync(device)
    elapsed = time.perf_counter() - start
    frames = torch.cat(out)
    return len(frames) / elapsed, frames[:n].numpy()


def output_paths(pipeline, speech, n: int, label: str) -> dict:
    """Finished uint8 frames per second on a 512² photo: the classic 256² renderer output against the sharp
    path (the photo warped at 512², pasted back), same pipeline, same frames."""
    from avct.inference.options import GenerateOptions
    from avct.inference.inputs import load_reference

    reference = load_reference(PHOTO_512)
    out = {}
    for mode in ("classic", "sharp"):
        options = GenerateOptions(render=mode)
        make = lambda: pipeline.frames(reference, speech, options=options)  # noqa: E731
        for _ in itertools.islice(make(), pipeline.batch_size):  # warm-up: one batch
            pass
        start = time.perf_counter()
        count = sum(1 for _ in itertools.islice(make(), n))
        out[f"fps_{mode}_{label}"] = count / (time.perf_counter() - start)
    out[f"sharp_vs_classic_{label}"] = out[f"fps_sharp_{label}"] / out[f"fps_classic_{label}"]
    return out


def outputs_only(args) -> dict:
    """The sharp path against the classic renderer alone (no per-frame baseline): official size, then the
    bundled weights, bf16, the same speech."""
    from avct.weights import load_models
    from avct.weights import default_weights_dir
    from avct.inference.pipeline import Pipeline
    from avct.inference.inputs import Speech
    from avct.testing.weight_fill import filled_models

    _, speech = load_inputs(args.inputs)
    n = args.batch_size * 4
    speech = Speech(speech.features[: 4 * n], speech.phonemes[:n])
    official = Pipeline(filled_models(near_identity_jacobians=True), device=args.device, precision="bf16",
                        batch_size=args.batch_size)
    bundled = Pipeline(load_models(default_weights_dir()), device=args.device, precision="bf16",
                       batch_size=args.batch_size)
    return {**output_paths(official, speech, n, "official"), **output_paths(bundled, speech, n, "bundled")}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    a8, b8 = (np.clip(a, 0, 1) * 255).astype(np.uint8), (np.clip(b, 0, 1) * 255).astype(np.uint8)
    mse = np.mean((a8.astype(np.float64) - b8.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def speed(args) -> dict:
    from avct.inference.devices import keep_large_allocations_in_heap
    from avct.testing.per_frame import per_frame_predictions
    from avct.inference.pipeline import Pipeline
    from avct.inference.inputs import Speech
    from avct.testing.weight_fill import filled_models

    device = torch.device(args.device)
    reference, speech = load_inputs(args.inputs)
    # whole batches (a video's one partial batch is noise over its length), at least 12 / 60 frames
    n_fast = args.batch_size * -(-(12 if args.quick else 60) // args.batch_size)
    n_slow = 3 if args.quick else 16
    speech = Speech(speech.features[: 4 * n_fast], speech.phonemes[:n_fast])
    models = filled_models(near_identity_jacobians=True)
    results: dict = {"device": str(device), "threads": torch.get_num_threads(), "frames_fast": n_fast,
                     "frames_per_frame": n_slow}

    # The baseline as the official code runs it: default memory layout and allocator, fp32, batch 1,
    # everything per frame. First: the fast pipelines tune the process's allocator for good. Then the same
    # loop with that allocator setting, to show what it buys on its own. (The pipelines share `models`
    # and cast them: fp32 before bf16.)
    plain = Pipeline(models, device=device, precision="fp32", batch_size=1, channels_last=False, tune_allocator=False,
                     backend="torch")
    slow_fps, _ = time_frames(lambda: per_frame_predictions(plain, reference, speech), n_slow, device, warmup=1)
    if device.type == "cpu":
        keep_large_allocations_in_heap()
        tuned_fps, _ = time_frames(lambda: per_frame_predictions(plain, reference, speech), n_slow, device, warmup=1)
    p32 = Pipeline(models, device=device, precision="fp32", batch_size=args.batch_size, backend="torch")
    fps32, f32 = time_frames(lambda: p32.predictions(reference, speech), n_fast, device)
    low = "bf16"
    plow = Pipeline(models, device=device, precision=low, batch_size=args.batch_size)
    fps_low, flow = time_frames(lambda: plow.predictions(reference, speech), n_fast, device)
    results.update(fps_fp32=fps32, fps_bf16=fps_low, fps_per_frame_fp32=slow_fps,
                   speedup_fp32=fps32 / slow_fps, speedup_bf16=fps_low / slow_fps, psnr_bf16=psnr(f32, flow))
    if device.type == "cpu":
        results.update(fps_per_frame_fp32_tuned_heap=tuned_fps, speedup_bf16_vs_tuned_per_frame=fps_low / tuned_fps)
        results.update(runtimes(args, models, reference, speech, n_fast, f32, slow_fps,
                                [("torch-fp32", fps32, float("inf")), ("torch-bf16", fps_low, results["psnr_bf16"])]))
    if not args.quick:
        pc = Pipeline(models, device=device, precision=low, batch_size=args.batch_size, compile=True)
        t = time.perf_counter()
        for _ in itertools.islice(pc.predictions(reference, speech), 1):
            pass
        results["compile_seconds"] = time.perf_counter() - t
        fps_c, fc = time_frames(lambda: pc.predictions(reference, speech), n_fast, device, warmup=0)
        results.update(fps_bf16_compiled=fps_c, speedup_bf16_compiled=fps_c / slow_fps, psnr_bf16_compiled=psnr(f32, fc))
    results.update(output_paths(plow, speech, n_fast, "official"))
    if not args.inputs:
        from avct.weights import load_models
        from avct.weights import default_weights_dir

        bundled = Pipeline(load_models(default_weights_dir()), device=device, precision=low, batch_size=args.batch_size)
        results.update(output_paths(bundled, speech, n_fast, "bundled"))
    if device.type == "cuda":
        p16 = Pipeline(models, device=device, precision="fp16", batch_size=args.batch_size)
        fps16, f16 = time_frames(lambda: p16.predictions(reference, speech), n_fast, device)
        results.update(fps_fp16=fps16, psnr_fp16=psnr(f32, f16))
    return results


PSNR_FLOOR = 35.0


def runtimes(args, models, reference, speech, n_fast: int, f32: np.ndarray, slow_fps: float,
             candidates: list[tuple[str, float, float]]) -> dict:
    """The renderer on each CPU runtime of avct.inference.backends (fp32 weights in; the first run with these weights
    converts them, cached after), and the fastest path that meets the PSNR floor against torch fp32."""
    from avct.errors import AvctError
    from avct.inference.pipeline import Pipeline

    results: dict = {}
    for backend in ("openvino", "openvino-int8"):
        try:
            t = time.perf_counter()
            pipe = Pipeline(models, device="cpu", precision="fp32", batch_size=args.batch_size, backend=backend)
            results[f"load_seconds_{backend}"] = time.perf_counter() - t
        except AvctError as error:
            print(f"{backend}: {error}", file=sys.stderr)
            continue
        fps, frames = time_frames(lambda: pipe.predictions(reference, speech), n_fast, torch.device("cpu"))
        results[f"fps_{backend}"], results[f"psnr_{backend}"] = fps, psnr(f32, frames)
        candidates.append((backend, fps, results[f"psnr_{backend}"]))
    name, fps, value = max((c for c in candidates if c[2] >= PSNR_FLOOR), key=lambda c: c[1])
    results.update(speedup_best=fps / slow_fps, psnr_best=value, backend_best=name)
    return results


# ---- memory: a fresh process per audio length ------------------------------------------------------
def write_long_inputs(seconds: float, directory: Path) -> tuple[Path, Path]:
    """Real speech tiled to `seconds` (wav) with its reference phonemes tiled alongside (JSON)."""
    import scipy.io.wavfile

    from avct.audio.phonemes import Phone, Word, read_phoneme_json, write_phoneme_json

    rate, samples = scipy.io.wavfile.read(SPEECH)
    words = read_phoneme_json(SPEECH.with_suffix(".json"))
    clip_cs = words[-1].phones[-1].ed
    repeats = int(np.ceil(seconds * 100 / clip_cs))
    wav = directory / f"speech_{int(seconds)}s.wav"
    total = int(seconds * rate)
    scipy.io.wavfile.write(wav, rate, np.tile(samples, repeats)[:total])
    tiled = [Word(w.word, tuple(Phone(p.ph, p.bg + r * clip_cs, p.ed + r * clip_cs) for p in w.phones))
             for r in range(repeats) for w in words]
    tiled = [w for w in tiled if w.phones[0].bg < seconds * 100]
    js = directory / f"speech_{int(seconds)}s.json"
    write_phoneme_json(tiled, js)
    return wav, js


class RssSampler:
    """Peak resident memory of this process over a block, sampled every 5 ms from /proc (Linux).

    ru_maxrss cannot be used: its high-water mark is set while the weights are being filled."""

    def __enter__(self):
        import threading

        self.peak, self._stop = self.rss(), False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def memory_probe(wav: str, phonemes: str, frames: int, device: str) -> None:
    """Child process: load, prepare the whole audio, render `frames` frames into an mp4 with all the audio."""
    import gc

    from avct.inference.pipeline import Pipeline
    from avct.inference.inputs import load_reference, load_speech
    from avct.testing.weight_fill import filled_models
    from avct.video.writer import VideoWriter

    pipeline = Pipeline(filled_models(), device=device, precision="fp32")
    gc.collect()
    before = RssSampler.rss()
    with RssSampler() as sampler:
        reference = load_reference(IMAGE)
        speech = load_speech(wav, phonemes=phonemes)
        with tempfile.TemporaryDirectory() as tmp:
            with VideoWriter(Path(tmp) / "out.mp4", audio_path=wav) as writer:
                for frame in itertools.islice(pipeline.frames(reference, speech), frames):
                    writer.write(frame)
    print(json.dumps({"peak_rss_mb": sampler.peak / 2**20, "models_rss_mb": before / 2**20,
                      "frames": speech.num_frames}))


def memory(args) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, seconds in (("10s", 10.0), ("10min", 600.0)):
            wav, js = write_long_inputs(seconds, Path(tmp))
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, __file__, "--memory-probe", str(wav), str(js),
                                   "--frames", str(args.memory_frames), "--device", args.device],
                                  capture_output=True, text=True, check=True)
            probe = json.loads(proc.stdout.strip().splitlines()[-1])
            out[f"peak_mb_{label}"] = probe["peak_rss_mb"]
            out[f"loaded_mb_{label}"] = probe["models_rss_mb"]
            out[f"video_frames_{label}"] = probe["frames"]
            out[f"seconds_{label}"] = time.perf_counter() - t
    out["memory_ratio_10min_vs_10s"] = out["peak_mb_10min"] / out["peak_mb_10s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="under a minute: fps and PSNR only")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--memory-frames", type=int, default=50, help="frames rendered in each memory probe")
    ap.add_argument("--outputs", action="store_true",
                    help="only the sharp-vs-classic output comparison (official size and bundled weights, bf16)")
    ap.add_argument("--inputs", help="prepared inputs (.npz from --save-inputs) instead of the real files")
    ap.add_argument("--save-inputs", help="prepare the real inputs into this .npz and exit")
    ap.add_argument("--memory-probe", nargs=2, metavar=("WAV", "JSON"), help=argparse.SUPPRESS)
    ap.add_argument("--frames", type=int, default=50, help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    if args.memory_probe:
        memory_probe(*args.memory_probe, args.frames, args.device)
        return
    if args.save_inputs:
        reference, speech = load_inputs()
        np.savez(args.save_inputs, image=reference.image.numpy(), pose=reference.pose,
                 features=speech.features, phonemes=speech.phonemes)
        return
    if args.outputs:
        results = outputs_only(args)
        print(" ".join(f"{k}={v:.3f}" for k, v in results.items()))
        return
    results = speed(args)
    if not args.quick and not args.inputs:
        results.update(memory(args))
    for k, v in results.items():
        print(f"{k:28s} {v:.3f}" if isinstance(v, float) else f"{k:28s} {v}")
    best = (f" speedup_best={results['speedup_best']:.2f} psnr_best={results['psnr_best']:.1f} "
            f"backend_best={results['backend_best']}" if "backend_best" in results else "")
    print(f"fps_fp32={results['fps_fp32']:.2f} fps_bf16={results['fps_bf16']:.2f} "
          f"speedup_bf16={results['speedup_bf16']:.2f} psnr_bf16={results['psnr_bf16']:.1f}{best}")


if __name__ == "__main__":
    main()
