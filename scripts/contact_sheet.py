"""A contact sheet of one real clip: the photo (its first frame) and the real frames, then what the classic
256² renderer and the sharp full-resolution path make from that photo and the clip's audio.

    .venv/bin/python scripts/contact_sheet.py CLIP.mp4 -o docs/sharp_contact_sheet.png [--checkpoint DIR]

Rows: real video (first tile = the photo given to avct), classic (upscaled to the photo's size, as a user
would see it), sharp (default). Columns: the same instants. Tiles are scaled to --tile pixels.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import cv2
import numpy as np


def label(tile: np.ndarray, text: str) -> np.ndarray:
    tile = tile.copy()
    cv2.rectangle(tile, (0, 0), (tile.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(tile, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("clip", help="a real talking clip (first frame = photo, its audio = speech)")
    p.add_argument("-o", "--output", required=True, help="PNG to write")
    p.add_argument("--checkpoint", help="weights (default: the bundled ones)")
    p.add_argument("--columns", type=int, default=5)
    p.add_argument("--tile", type=int, default=256)
    args = p.parse_args(argv)

    from avct.inference.options import GenerateOptions
    from avct.inference.pipeline import Pipeline
    from avct.inference.inputs import load_reference, load_speech
    from avct.video.reader import read_video

    pipeline = Pipeline.load(args.checkpoint, device="cpu")
    real = list(read_video(args.clip))
    reference, speech = load_reference(real[0]), load_speech(args.clip)
    n = min(speech.num_frames, len(real))
    picks = np.linspace(0, n - 1, args.columns + 1)[1:].round().astype(int)
    size = (args.tile, round(args.tile * real[0].shape[0] / real[0].shape[1]))

    def row(frames, name: str) -> np.ndarray:
        tiles = [label(cv2.resize(f, size, interpolation=cv2.INTER_AREA), f"{name} t={i / 25:.1f}s")
                 for i, f in zip(picks, frames)]
        return np.concatenate(tiles, axis=1)

    def picked(options: GenerateOptions):
        frames = pipeline.frames(reference, speech, options=options)
        wanted = set(picks.tolist())
        return [f for i, f in enumerate(itertools.islice(frames, picks[-1] + 1)) if i in wanted]

    classic = [cv2.resize(f, real[0].shape[1::-1], interpolation=cv2.INTER_CUBIC)
               for f in picked(GenerateOptions(render="classic"))]
    sharp = picked(GenerateOptions())
    photo = label(cv2.resize(real[0], size, interpolation=cv2.INTER_AREA), "photo (input)")
    blank = np.zeros_like(photo)
    sheet = np.concatenate([
        np.concatenate([photo, row([real[i] for i in picks], "real")], axis=1),
        np.concatenate([label(blank, "classic 256^2"), row(classic, "classic")], axis=1),
        np.concatenate([label(blank, "sharp (default)"), row(sharp, "sharp")], axis=1),
    ], axis=0)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.output, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
