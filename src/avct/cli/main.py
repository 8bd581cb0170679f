"""Command line: thin wrappers that parse arguments, call the library and print.

Every error a user can cause surfaces as one line on stderr and a non-zero exit; no tracebacks.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..audio.transcript import read_transcript
from ..errors import AvctError, AvctNotice
from ..inference.devices import PRECISION_CHOICES
from ..inference.options import DEFAULT_MAX_SIZE, RENDER_MODES, parse_face

if TYPE_CHECKING:
    from ..inference.options import GenerateOptions
    from ..inference.pipeline import Pipeline


def _generate_description() -> str:
    import textwrap

    from ..weights.bundled import MODEL_CARD

    text = ("Animate the face in a photo with a speech recording. The output is a 25 fps H.264 + AAC mp4 of "
            "the whole photo at its own resolution (long side capped by --max-size), the face animated by "
            "warping the photo itself and pasted back (--crop-only: the animated face crop alone; --render "
            "classic: the paper's 256x256 renderer output). Without "
            "--checkpoint, the small demonstration weights bundled with avct are used (lips follow the "
            "speech only faintly).")
    card = f"What the bundled weights are and how they were trained (model card):\n  {MODEL_CARD}"
    return f"{textwrap.fill(text, 79)}\n\n{card}"


def _add_generate(sub: argparse._SubParsersAction) -> None:
    from ..audio.features import F0_METHODS
    from ..inference.options import GenerateOptions

    p = sub.add_parser("generate", help="image + speech -> talking-head mp4", description=_generate_description(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", required=True, help="reference face image (any common format)")
    p.add_argument("--audio", required=True, help="speech (wav/flac/mp3/m4a/ogg or a video's audio track)")
    p.add_argument("-o", "--output", required=True, help="output .mp4 (written atomically)")
    p.add_argument("--phonemes", help="phoneme timings in the official JSON format (else recognised offline)")
    p.add_argument("--transcript", help="what is said (text or a .txt file): far better phoneme alignment")
    p.add_argument("--pose", help="reference head pose Rx,Ry,Rz,Tx,Ty,Tz (rad, mm; OpenFace convention); "
                                  "estimated from the face when omitted")
    p.add_argument("--no-crop", action="store_true",
                   help="the whole image is the face crop (the networks see it resized to 256x256)")
    p.add_argument("--render", choices=RENDER_MODES, default="sharp",
                   help="sharp (default): the photo itself warped at its resolution by the renderer's motion, "
                        "the renderer's picture only where the photo cannot show it (an opening mouth); "
                        "classic: the paper's renderer output, 256x256 crops (the official output bit for bit)")
    p.add_argument("--crop-only", action="store_true",
                   help="write the animated face crop alone instead of the whole photo")
    p.add_argument("--size", metavar="N|native",
                   help="with --crop-only: crop side in pixels (default 256) or 'native' (the crop's own size)")
    p.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE,
                   help=f"long side of the whole-photo output, larger photos are scaled down (default {DEFAULT_MAX_SIZE})")
    p.add_argument("--face", help="which face of a photo with several: largest (default), center, or N "
                                  "(0 = leftmost, counted from left to right)")
    _add_motion_controls(p)
    p.add_argument("--f0", choices=F0_METHODS, default=GenerateOptions.f0,
                   help="pitch estimator: fast (default, Harvest on a 4 kHz copy) or official (Harvest at "
                        "16 kHz, as the official code; ~2x slower)")
    p.add_argument("--frames", metavar="DIR", help="also write every frame as a lossless PNG into DIR")
    _add_model_options(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_generate)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    """The options of the loaded models (one Pipeline serves many jobs), shared by generate and batch."""
    p.add_argument("--checkpoint", action="append",
                   help="directory with the official generator.ckpt + audio2pose.ckpt, avct weights, or an "
                        "`avct train` run; repeat to combine (e.g. an avct run + a headmotion run). "
                        "Default: the small weights bundled with avct (see their MODEL_CARD.md)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", default="fp32", choices=PRECISION_CHOICES,
                   help="network precision: fp32 (default), bf16 (fast where the CPU or GPU has it natively: "
                        "AVX-512-BF16, AMX, recent GPUs; emulated and slow elsewhere), auto (bf16 where native, "
                        "else fp32), fp16 (GPU only)")
    p.add_argument("--batch-size", type=int, default=8, help="frames rendered per batch (default 8)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the renderer (faster on GPUs; on CPUs on par with the eager fast path, measured)")


def load_pipeline(args: argparse.Namespace, device: str | None = None) -> "Pipeline":
    """The Pipeline of ``_add_model_options``' arguments (``device`` overrides ``--device``)."""
    from ..inference.pipeline import Pipeline

    return Pipeline.from_checkpoints(args.checkpoint, device=device or args.device, precision=args.precision,
                                     batch_size=args.batch_size, compile=args.compile)


def _add_motion_controls(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("motion controls", "change the predicted motion (README, Motion controls)")
    g.add_argument("--still", action="store_true",
                   help="no head motion: the photo's head pose is held, the lips move")
    g.add_argument("--pose-scale", metavar="S",
                   help="head motion amplitude about the photo's pose, 0..3 (0 = --still, default 1)")
    g.add_argument("--pose-from", metavar="VIDEO",
                   help="move the head like the person in VIDEO (its pose changes, looped to the speech)")
    g.add_argument("--mouth-scale", metavar="S", help="lip motion amplitude, 0..3 (0 = silent lips, default 1)")


def generate_options(args: argparse.Namespace) -> "GenerateOptions":
    """The per-job options of ``generate``'s arguments, parsed and checked by GenerateOptions."""
    from ..inference.options import GenerateOptions

    return GenerateOptions.from_mapping({
        "phonemes": args.phonemes, "transcript": read_transcript(args.transcript), "pose": args.pose,
        "crop": not args.no_crop, "face": args.face, "still": args.still, "pose_scale": args.pose_scale,
        "pose_from": args.pose_from, "mouth_scale": args.mouth_scale, "render": args.render,
        "crop_only": args.crop_only, "size": args.size, "max_size": args.max_size, "f0": args.f0})


def require_file(what: str, path: str | Path | None) -> None:
    """AvctError unless ``path`` (if given) is an existing file: says 'not found' or 'is a folder'."""
    if path is None:
        return
    if Path(path).is_dir():
        raise AvctError(f"{what} is a folder, not a file: {path}")
    if not Path(path).is_file():
        raise AvctError(f"{what} not found: {path}")


def cmd_generate(args: argparse.Namespace) -> int:
    from ..inference.pipeline import load_job_reference, load_speech
    from ..video.writer import check_output_name

    for what, path in (("image", args.image), ("audio", args.audio), ("phoneme file", args.phonemes),
                       ("pose video", args.pose_from)):
        require_file(what, path)
    check_output_name(args.output)
    options = generate_options(args)
    # Cheap checks first, so a bad input fails in seconds, before loading weights or recognising speech.
    reference = load_job_reference(args.image, options)
    pipeline = load_pipeline(args)
    speech = load_speech(args.audio, phonemes=options.phonemes, transcript=options.transcript,
                         f0=options.f0)
    out = pipeline.write_video(reference, speech, args.output, args.audio, frames_dir=args.frames,
                               progress=not args.quiet, options=options)
    print(out)
    return 0


def _add_batch(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("batch", help="a manifest of image + audio rows -> one mp4 per row",
                       description="Generate one video per row of a CSV or JSONL manifest (columns image, audio, "
                                   "optional output and any generate option, e.g. still, pose_scale, face, "
                                   "transcript) with the models loaded once. Rows whose output exists are "
                                   "skipped, failed rows are reported and the run goes on (DIR/report.csv; "
                                   "exit status 1 if any row failed). Under torchrun --nproc_per_node N each "
                                   "process takes every N-th row, writes DIR/report.rank{RANK}.csv and exits 0 "
                                   "(torchrun would stop the others on a non-zero exit); rerun without torchrun "
                                   "to retry failed rows.")
    p.add_argument("manifest", help="CSV (header row) or JSONL (.jsonl) file; paths relative to its folder")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    _add_model_options(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_batch)


def cmd_batch(args: argparse.Namespace) -> int:
    import os

    from ..inference.batch import process_share, read_manifest, run_batch

    read_manifest(args.manifest)  # a bad manifest fails before the weights load
    rank, world_size = process_share()
    device = None
    if args.device == "auto" and "LOCAL_RANK" in os.environ:  # one GPU per process under torchrun
        import torch

        if torch.cuda.is_available():
            device = f"cuda:{int(os.environ['LOCAL_RANK']) % torch.cuda.device_count()}"
    report = run_batch(args.manifest, args.output, load_pipeline(args, device=device), rank=rank,
                       world_size=world_size, progress=not args.quiet)
    print(report.summary())
    if report.failed and world_size > 1:
        # torchrun stops every process as soon as one exits non-zero: a failed row must not cost the others.
        print(f"avct: note: process {rank} exits 0 although rows failed (see {report.report_path}); run the same "
              "avct batch command again without torchrun to retry them and get the exit status", file=sys.stderr)
        return 0
    return 1 if report.failed else 0


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
    from ..weights.store import load_models, merge_models, save_models

    merged = merge_models([load_models(src) for src in args.sources])
    out = save_models(merged, args.output, half=args.half)
    names = list(merged.components())
    if args.syncnet:
        from ..weights.syncnet import load_syncnet, save_syncnet

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
    from ..audio.decode import load_audio
    from ..audio.phonemes import write_phoneme_json
    from ..audio.recognize import recognize_phonemes

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
    p.add_argument("--face", default="largest",
                   help="which face of a photo with several: largest (default), center, or N (0 = leftmost)")
    p.set_defaults(func=cmd_pose)


def cmd_pose(args: argparse.Namespace) -> int:
    from ..face.crop import crop_reference
    from ..face.head_pose import estimate_head_pose, format_pose, reference_pose
    from ..face.image import read_image, resize_256
    from ..face.landmarks import select_face

    rgb = read_image(args.image)
    if args.no_crop:
        pose = reference_pose(resize_256(rgb), source_name=args.image)
    else:
        face = select_face(rgb, parse_face(args.face), source_name=args.image,
                           no_face_hint="a head pose needs a visible face (generate animates such a picture "
                                        "from a frontal pose)")
        pose = estimate_head_pose(crop_reference(rgb, face).landmarks)
    print(format_pose(pose))
    return 0


def _add_serve(sub: argparse._SubParsersAction) -> None:
    from ..serving.settings import ServeSettings  # no FastAPI import: `avct --help` stays fast

    d = ServeSettings()
    p = sub.add_parser("serve", help="web page + HTTP API (jobs: upload, poll, download) on one loaded model",
                       description="Serve a web page at / and a versioned HTTP API at /v1 (OpenAPI: /openapi.json). "
                                   "The model loads once; jobs run in the background, others wait in a bounded queue.")
    p.add_argument("--host", help=f"address to listen on (default {d.host}: this machine only; the server has no "
                                  "authentication)")
    p.add_argument("--port", type=int, help=f"port (default {d.port}; 0: any free port)")
    p.add_argument("--checkpoint", action="append", help="weights as for generate (default: the bundled weights)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", default="fp32", choices=PRECISION_CHOICES, help="network precision, as for generate")
    p.add_argument("--max-upload-mb", type=float, help=f"largest request body, photo + audio (default {d.max_upload_mb:g})")
    p.add_argument("--max-audio-s", type=float, help=f"longest speech accepted, seconds (default {d.max_audio_s:g})")
    p.add_argument("--workers", type=int, help=f"jobs generating at once (default {d.workers})")
    p.add_argument("--queue", type=int, help=f"jobs waiting beyond those, uploads being checked included; "
                                             f"more get HTTP 503 at once (default {d.queue})")
    p.add_argument("--keep-minutes", type=float,
                   help=f"finished jobs and their files are deleted after this long (default {d.keep_minutes:g})")
    p.add_argument("--max-job-s", type=float, help="a job generating longer than this fails (default: no limit)")
    p.add_argument("--work-dir", type=Path, help="folder for per-job uploads and videos (default: a temporary folder)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from ..serving.server import serve
    from ..serving.settings import ServeSettings

    serve(ServeSettings.from_values(vars(args)), checkpoints=args.checkpoint, device=args.device,
          precision=args.precision)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avct", description="One-shot talking-head generation (AVCT).")
    parser.add_argument("--version", action="version", version=f"avct {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from ..data.preprocess.run import add_preprocess_parser
    from .evaluate import add_evaluate_parser
    from .train import add_train_parser

    for add in (_add_generate, _add_batch, _add_convert, _add_phonemes, _add_pose, add_preprocess_parser,
                add_train_parser, add_evaluate_parser, _add_serve):
        add(sub)
    return parser


def _show_notices(show_others):
    """A ``warnings.showwarning`` that prints AvctNotices as plain notes and leaves the rest alone."""
    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, AvctNotice):
            print(f"avct: note: {message}", file=sys.stderr)
        else:
            show_others(message, category, filename, lineno, file, line)
    return show


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser().parse_args(argv))


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command; user errors become one line on stderr and a non-zero exit, notices
    (:class:`~avct.errors.AvctNotice`) one ``avct: note:`` line each."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", AvctNotice)
            warnings.showwarning = _show_notices(warnings.showwarning)
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
