"""Command line: thin wrappers that parse arguments, call the library and print.

Every error a user can cause surfaces as one line on stderr and a non-zero exit; no tracebacks.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .errors import AvctError


def _add_generate(sub: argparse._SubParsersAction) -> None:
    from .audio.features import F0_METHODS
    from .options import GenerateOptions

    p = sub.add_parser("generate", help="image + speech -> talking-head mp4",
                       description="Animate one face image with a speech recording (25 fps H.264 + AAC mp4).")
    p.add_argument("--image", required=True, help="reference face image (any common format)")
    p.add_argument("--audio", required=True, help="speech (wav/flac/mp3/m4a/ogg or a video's audio track)")
    p.add_argument("-o", "--output", required=True, help="output .mp4 (written atomically)")
    p.add_argument("--checkpoint", action="append",
                   help="directory with the official generator.ckpt + audio2pose.ckpt, avct weights, or an "
                        "`avct train` run; repeat to combine (e.g. an avct run + a headmotion run). "
                        "Default: the small weights bundled with avct (see their MODEL_CARD.md)")
    p.add_argument("--phonemes", help="phoneme timings in the official JSON format (else recognised offline)")
    p.add_argument("--transcript", help="what is said (text or a .txt file): far better phoneme alignment")
    p.add_argument("--pose", help="reference head pose Rx,Ry,Rz,Tx,Ty,Tz (rad, mm; OpenFace convention); "
                                  "estimated from the face when omitted")
    p.add_argument("--no-crop", action="store_true", help="use the image as it is, resized to 256x256")
    p.add_argument("--f0", choices=F0_METHODS, default=GenerateOptions.f0,
                   help="pitch estimator: fast (default, Harvest on a 4 kHz copy) or official (Harvest at "
                        "16 kHz, as the official code; ~2x slower)")
    p.add_argument("--frames", metavar="DIR", help="also write every frame as a lossless PNG into DIR")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="network precision (bf16 is fast on recent CPUs and GPUs; fp16 GPU only)")
    p.add_argument("--batch-size", type=int, default=8, help="frames rendered per batch (default 8)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the renderer (faster on GPUs; on CPUs on par with the eager fast path, measured)")
    p.add_argument("--seed", type=int, default=0, help="random seed (inference is deterministic anyway)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_generate)


def read_transcript(value: str | None) -> str | None:
    """--transcript takes text or the path of a text file."""
    if value is None:
        return None
    path = Path(value)
    if len(value) < 4096 and path.suffix.lower() in {".txt", ".lab", ".text"}:
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise AvctError(f"transcript file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise AvctError(f"cannot read transcript {path}: {e}") from None
    return value


def cmd_generate(args: argparse.Namespace) -> int:
    import torch

    from .pipeline import Pipeline, load_reference, load_speech, parse_pose

    for what, path in (("image", args.image), ("audio", args.audio), ("phoneme file", args.phonemes)):
        if path is not None and not Path(path).is_file():
            raise AvctError(f"{what} not found: {path}")
    if not args.output.lower().endswith((".mp4", ".m4v", ".mov")):
        raise AvctError(f"output must be an .mp4 file, got {args.output}")
    pose = parse_pose(args.pose) if args.pose else None
    torch.manual_seed(args.seed)
    # Cheap checks first, so a bad input fails in seconds, before loading weights or recognising speech.
    reference = load_reference(args.image, crop=not args.no_crop, pose=pose)
    from .checkpoints import load_models, merge_models
    from .default_weights import resolve_checkpoint

    models = merge_models([load_models(resolve_checkpoint(path)) for path in args.checkpoint or [None]])
    pipeline = Pipeline(models, device=args.device, precision=args.precision, batch_size=args.batch_size,
                        compile=args.compile)
    speech = load_speech(args.audio, phonemes=args.phonemes, transcript=read_transcript(args.transcript),
                         f0=args.f0)
    out = pipeline.write_video(reference, speech, args.output, args.audio, frames_dir=args.frames,
                               progress=not args.quiet)
    print(out)
    return 0


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="official/FOMM checkpoints or training runs -> one avct weights folder",
                       description="Read official AVCT (generator.ckpt, audio2pose.ckpt), FOMM vox-256 checkpoints, "
                                   "avct weights or `avct train` run folders safely and write one avct weights "
                                   "folder (safetensors + config.json).")
    p.add_argument("sources", nargs="+", help="checkpoint files, weights or run folders; later ones add/override networks")
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("--half", action="store_true", help="store the weights as fp16 (half the size; loads as fp32)")
    p.add_argument("--syncnet", metavar="PATH",
                   help="also copy a D_sync (a syncnet run or its weights) into the folder, for avct evaluate")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from .checkpoints import load_models, merge_models, save_models

    merged = merge_models([load_models(src) for src in args.sources])
    out = save_models(merged, args.output, half=args.half)
    names = list(merged.components())
    if args.syncnet:
        from .models.discriminators import load_syncnet, save_syncnet

        save_syncnet(load_syncnet(args.syncnet), out, half=args.half)
        names.append("syncnet")
    print(f"{out}: {', '.join(names)}")
    return 0


def _add_phonemes(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("phonemes", help="offline phoneme timings in the official JSON format",
                       description="Recognise (or, with --transcript, force-align) phonemes offline.")
    p.add_argument("audio", help="speech in any common format")
    p.add_argument("--transcript", help="what is said (text or a .txt file)")
    p.add_argument("--mode", choices=["words", "allphone"], default=None,
                   help="recognition without transcript: word decoding + alignment, or allphone decoding")
    p.add_argument("-o", "--output", required=True, help="output .json (written atomically)")
    p.set_defaults(func=cmd_phonemes)


def cmd_phonemes(args: argparse.Namespace) -> int:
    from .audio.decode import load_audio
    from .audio.phonemes import write_phoneme_json
    from .audio.recognize import recognize_phonemes

    decoded = load_audio(args.audio)
    kwargs = {"mode": args.mode} if args.mode else {}
    words = recognize_phonemes(decoded.samples, transcript=read_transcript(args.transcript), **kwargs)
    write_phoneme_json(words, args.output)
    print(args.output)
    return 0


def _add_pose(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pose", help="print the reference head pose of a face image",
                       description="Detect the face, crop it as generate does, and print its head pose "
                                   "Rx,Ry,Rz,Tx,Ty,Tz (radians, mm; OpenFace convention).")
    p.add_argument("image")
    p.add_argument("--no-crop", action="store_true", help="the image is already a 256x256-style crop")
    p.set_defaults(func=cmd_pose)


def cmd_pose(args: argparse.Namespace) -> int:
    from .pipeline import load_reference

    ref = load_reference(args.image, crop=not args.no_crop)
    print(",".join(f"{v:.6g}" for v in ref.pose))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avct", description="One-shot talking-head generation (AVCT).")
    parser.add_argument("--version", action="version", version=f"avct {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from .data.preprocess import add_preprocess_parser
    from .eval.cli import add_evaluate_parser
    from .train.cli import add_train_parser

    for add in (_add_generate, _add_convert, _add_phonemes, _add_pose, add_preprocess_parser, add_train_parser,
                add_evaluate_parser):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser().parse_args(argv))


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command; user errors become one line on stderr and a non-zero exit."""
    try:
        return args.func(args)
    except AvctError as e:
        print(f"avct: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("avct: interrupted; no partial output left behind", file=sys.stderr)
        return 130
    except MemoryError:
        print("avct: error: out of memory; try a smaller --batch-size", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
