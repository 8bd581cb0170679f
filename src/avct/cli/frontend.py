"""``avct phonemes`` and ``avct pose``: the front end's answers for one input (phoneme timings, head pose)."""
from __future__ import annotations

import argparse

from ..audio.transcript import read_transcript
from ..inference.options import parse_face


def add_phonemes_parser(sub: argparse._SubParsersAction) -> None:
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


def add_pose_parser(sub: argparse._SubParsersAction) -> None:
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


