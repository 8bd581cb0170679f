"""``avct convert``: official/FOMM checkpoints, avct weights or training runs -> one avct weights folder."""
from __future__ import annotations

import argparse


def add_convert_parser(sub: argparse._SubParsersAction) -> None:
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
    from ..weights import load_models, save_models

    merged = load_models(list(args.sources))
    out = save_models(merged, args.output, half=args.half)
    names = list(merged.components())
    if args.syncnet:
        from ..weights import load_syncnet, save_syncnet

        save_syncnet(load_syncnet(args.syncnet), out, half=args.half)
        names.append("syncnet")
    print(f"{out}: {', '.join(names)}")
    return 0


