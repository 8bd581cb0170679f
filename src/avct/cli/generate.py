"""``avct generate`` (one photo + speech -> mp4) and ``avct batch`` (a manifest of them, models loaded once)."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ..audio.transcript import read_transcript
from ..errors import AvctError
from ..inference.options import DEFAULT_MAX_SIZE, FILL_CHOICES, RENDER_MODES
from .options import add_model_options, add_quiet, load_pipeline, require_file, runtime_options

if TYPE_CHECKING:
    from ..inference.options import GenerateOptions


def _generate_description() -> str:
    import textwrap

    from ..weights.bundled import MODEL_CARD

    text = ("Animate the face in a photo with a speech recording. The output is a 25 fps H.264 + AAC mp4 of "
            "the whole photo with the face animated at the photo's own resolution (long side capped by "
            "--max-size): the photo itself is warped and the face pasted back (--crop-only: the animated face crop alone; --render "
            "classic: the paper's 256x256 renderer output). Without "
            "--checkpoint, the small weights bundled with avct are used: their mouth opens and closes with "
            "the speech through a lip-aperture network, weaker than a real speaker's (model card).")
    card = f"What the bundled weights are and how they were trained (model card):\n  {MODEL_CARD}"
    return f"{textwrap.fill(text, 79)}\n\n{card}"


def add_generate_parser(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--render", choices=RENDER_MODES,
                   help="sharp (default): the photo itself warped at its resolution by the renderer's motion, "
                        "the renderer's picture only where the photo cannot show it (an opening mouth); "
                        "classic: the paper's renderer output, 256x256 crops")
    p.add_argument("--official", action="store_true",
                   help="the paper's exact output: --render classic --f0 official --precision fp32 --backend torch "
                        "(docs/parity.md)")
    p.add_argument("--fill", choices=FILL_CHOICES, default=GenerateOptions.fill,
                   help="sharp output, where the photo is occluded: renderer (its 256x256 picture blended in), "
                        "photo (the warped photo alone, ~5x less renderer work), auto (default): photo where "
                        "the lips are opened by the mouth warp (bundled weights), else renderer")
    p.add_argument("--crop-only", action="store_true",
                   help="write the animated face crop alone instead of the whole photo")
    p.add_argument("--size", metavar="N|native",
                   help="with --crop-only: crop side in pixels (default 256) or 'native' (the crop's own size)")
    p.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE,
                   help=f"long side of the whole-photo output, larger photos are scaled down (default {DEFAULT_MAX_SIZE})")
    p.add_argument("--motion-step", metavar="N", default=GenerateOptions.motion_step,
                   help="where the renderer's picture is not shown (--fill auto with the bundled weights, photo): "
                        "the head's motion computed every N frames and interpolated between, 1..4 (default "
                        f"{GenerateOptions.motion_step}; 1 = every frame)")
    p.add_argument("--face", help="which face of a photo with several: largest (default), center, or N "
                                  "(0 = leftmost, counted from left to right)")
    _add_motion_controls(p)
    p.add_argument("--f0", choices=F0_METHODS,
                   help="pitch estimator: fast (default, Harvest on a 4 kHz copy) or official (Harvest at "
                        "16 kHz, as the official code; ~2x slower)")
    p.add_argument("--frames", metavar="DIR", help="also write every frame as a lossless PNG into DIR")
    add_model_options(p)
    add_quiet(p)
    p.set_defaults(func=cmd_generate)


def _add_motion_controls(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("motion controls", "change the predicted motion (README, Motion controls)")
    g.add_argument("--still", action="store_true",
                   help="no head motion: the photo's head pose is held, the lips move")
    g.add_argument("--pose-scale", metavar="S",
                   help="head motion amplitude about the photo's pose, 0..3 (0 = --still, default 1)")
    g.add_argument("--pose-from", metavar="VIDEO",
                   help="move the head like the person in VIDEO (its pose changes, looped to the speech)")
    g.add_argument("--mouth-scale", metavar="S", help="lip motion amplitude, 0..3 (0 = silent lips, default 1)")
    g.add_argument("--blink-rate", metavar="N",
                   help="sharp output: blinks a minute, 0..60 (0 = none; default 18, irregular, more often in pauses)")


def generate_options(args: argparse.Namespace) -> "GenerateOptions":
    """The per-job options of ``generate``'s arguments, parsed and checked by GenerateOptions
    (``--official``: :meth:`GenerateOptions.official` under the other choices, which must agree with it)."""
    from ..inference.options import GenerateOptions

    if args.official:
        clashes = [f"--{name} {getattr(args, name)}" for name, wanted in
                   (("render", "classic"), ("f0", "official"), ("precision", "fp32"), ("backend", "torch"))
                   if getattr(args, name) not in (None, wanted)]
        if clashes:
            raise AvctError(f"--official is the paper's exact output; it cannot go with {', '.join(clashes)}")
        args.render, args.f0 = "classic", "official"
    return GenerateOptions.from_mapping({
        "phonemes": args.phonemes, "transcript": read_transcript(args.transcript), "pose": args.pose,
        "crop": not args.no_crop, "face": args.face, "still": args.still, "pose_scale": args.pose_scale,
        "pose_from": args.pose_from, "mouth_scale": args.mouth_scale, "blink_rate": args.blink_rate,
        "render": args.render, "fill": args.fill,
        "crop_only": args.crop_only, "size": args.size, "max_size": args.max_size, "f0": args.f0,
        "motion_step": args.motion_step})


def cmd_generate(args: argparse.Namespace) -> int:
    from ..audio.frontend_process import FrontendProcess
    from ..video.writer import check_output_name

    for what, path in (("image", args.image), ("audio", args.audio), ("phoneme file", args.phonemes),
                       ("pose video", args.pose_from)):
        require_file(what, path)
    check_output_name(args.output)
    options = generate_options(args)
    runtime = runtime_options(args, official=args.official)
    # Cheap checks first, so a bad input fails in seconds, before loading weights or recognising speech;
    # then the speech front-end starts in a process of its own, working while torch, the photo and the
    # weights load here (it needs none of them).
    try:
        frontend = FrontendProcess(args.audio, phonemes=options.phonemes, transcript=options.transcript,
                                   f0=options.f0)
    except OSError:  # no process can be started here: the front-end runs in this one, after the weights
        frontend = None
    try:
        from ..inference.job import generate_video

        out = generate_video(args.image, args.audio, args.output, options, lambda: load_pipeline(args, runtime),
                             frames_dir=args.frames, progress=not args.quiet, frontend=frontend)
    finally:
        if frontend is not None:
            frontend.close()
    print(out)
    return 0


def add_batch_parser(sub: argparse._SubParsersAction) -> None:
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
    add_model_options(p)
    add_quiet(p, "no progress bars")
    p.set_defaults(func=cmd_batch)


def cmd_batch(args: argparse.Namespace) -> int:
    from ..batch import process_share, read_manifest, run_batch

    read_manifest(args.manifest)  # a bad manifest fails before the weights load
    rank, world_size = process_share()
    report = run_batch(args.manifest, args.output, load_pipeline(args), rank=rank,
                       world_size=world_size, progress=not args.quiet)
    print(report.summary())
    if report.failed and world_size > 1:
        # torchrun stops every process as soon as one exits non-zero: a failed row must not cost the others.
        print(f"avct: note: process {rank} exits 0 although rows failed (see {report.report_path}); run the same "
              "avct batch command again without torchrun to retry them and get the exit status", file=sys.stderr)
        return 0
    return 1 if report.failed else 0


