"""Two-fold cross-speaker validation of the lip-aperture network and its rules (model card, "Lip motion").

    .venv/bin/python scripts/lip_validation.py --data LIP_DATASET --out DIR \
        [--config configs/bundled/lips.yaml] [--same-person obama,andrew]

The clips of LIP_DATASET (`avct preprocess` with phonemes, as the recipe's lip set) are split by person
into two folds: a person's clips stay together (``--same-person``: name prefixes that mark one person's
clips; every other clip is a person of its own). The network is trained on each fold (`avct train lips`,
DIR/fold{0,1}) and predicts the other fold's clips. Each prediction then goes through the rules
generation applies (``LipApertureNet.predict``, the pause rule, the photo's own aperture, with the clip's
first frame as the photo) and is scored against the clip's real aperture like `avct.eval.lips` scores
videos: r, amplitude ratio, silence gap. No rendering: this measures the curves. Writes
DIR/validation.md; prints it too.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np


def person_folds(names: list[str], same_person: list[str]) -> dict[str, int]:
    """Clip name -> fold (0 or 1): persons sorted by name, alternating, a person's clips together."""
    def person(name: str) -> str:
        return next((p for p in same_person if name.startswith(p)), name)

    persons = sorted({person(n) for n in names})
    return {n: persons.index(person(n)) % 2 for n in names}


def fold_dataset(data: Path, index: dict, keep: list[dict], out: Path) -> Path:
    """A dataset folder of some of ``data``'s clips (symbolic links and a filtered index)."""
    (out / "clips").mkdir(parents=True, exist_ok=True)
    for clip in keep:
        link = out / "clips" / clip["name"]
        if not link.exists():
            os.symlink((data / "clips" / clip["name"]).resolve(), link)
    (out / "index.json").write_text(json.dumps({**index, "clips": keep, "skipped": []}, indent=1))
    return out


def score_clip(net, clip) -> dict:
    """One held-out clip through the generation rules -> r, amplitude, silence gap against its real lips."""
    import torch

    from avct.eval.lips import lip_statistics, silent_frames
    from avct.face.landmark_groups import aperture_curve
    from avct.inference.mouth_opening import aperture_plan
    from avct.media import FPS, SAMPLE_RATE

    n = clip.usable_frames
    rows = np.array(clip.feature_rows(0, n), np.float32).reshape(-1, 41)
    phonemes = np.array(clip.phoneme_range(0, n), np.int64)
    predicted = net.predict(torch.from_numpy(rows), torch.from_numpy(phonemes)).numpy().astype(np.float64)
    real = aperture_curve(list(np.asarray(clip.landmarks[:n], np.float64)))
    photo = float(real[np.isfinite(real)][0])  # the first frame with a face is the photo
    generated = photo + aperture_plan(predicted, rows, photo)
    silent = silent_frames(np.asarray(clip.audio, np.float64), SAMPLE_RATE, n, FPS)
    stats = lip_statistics(generated, real, silent)
    return {"r": stats.r, "amplitude": stats.amplitude, "silence_gap": stats.silence_gap}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="preprocessed lip dataset (with phonemes)")
    p.add_argument("--out", required=True, help="work and report directory")
    p.add_argument("--config", default="configs/bundled/lips.yaml", help="lips training config")
    p.add_argument("--same-person", default="obama,andrew",
                   help="comma-separated clip-name prefixes that each mark one person's clips")
    args = p.parse_args(argv)

    from avct.cli import main as avct
    from avct.data.dataset import TalkingHeadDataset
    from avct.io_utils import atomic_write_text
    from avct.weights import load_models

    data, out = Path(args.data), Path(args.out)
    index = json.loads((data / "index.json").read_text())
    folds = person_folds([c["name"] for c in index["clips"]], [s for s in args.same_person.split(",") if s])
    rows = []
    for fold in (0, 1):
        train = fold_dataset(data, index, [c for c in index["clips"] if folds[c["name"]] != fold],
                             out / "data" / f"fold{fold}_train")
        test = fold_dataset(data, index, [c for c in index["clips"] if folds[c["name"]] == fold],
                            out / "data" / f"fold{fold}_test")
        run = out / f"fold{fold}"
        resume = ["--resume"] if (run / "run.json").is_file() else ["--config", args.config]
        if avct(["train", "lips", "--data", str(train), "--out", str(run), "-q", *resume]) != 0:
            return 1
        net = load_models(run).lip_aperture.eval()
        dataset = TalkingHeadDataset(test)
        for i in range(len(dataset)):
            rows.append({"clip": dataset.clips[i].name, "fold": fold, **score_clip(net, dataset.clip(i))})
    amps = np.array([r["amplitude"] for r in rows])
    gaps = np.array([r["silence_gap"] for r in rows if r["silence_gap"] is not None])
    lines = ["# Lip validation (two folds, cross-speaker)", "", f"Config: {args.config}.", "",
             "| clip | fold | r | amp | silence gap |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['clip']} | {r['fold']} | {r['r']:.3f} | {r['amplitude']:.2f} | "
              f"{'—' if r['silence_gap'] is None else format(r['silence_gap'], '.3f')} |" for r in rows]
    lines += ["", f"mean r {np.mean([r['r'] for r in rows]):.3f}; amplitude within 0.6-1.5: "
              f"{int(((amps >= 0.6) & (amps <= 1.5)).sum())} of {len(amps)}; silence gap within 0.02: "
              f"{int((np.abs(gaps) <= 0.02).sum())} of {len(gaps)} clips with pauses", ""]
    table = "\n".join(lines)
    atomic_write_text(out / "validation.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
