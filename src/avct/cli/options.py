"""Options and checks several commands share, defined once."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import AvctError
from ..inference.options import BACKENDS, PRECISION_CHOICES, RuntimeOptions

if TYPE_CHECKING:
    from ..inference.pipeline import Pipeline

DEFAULT = RuntimeOptions()

PRECISION_HELP = ("network precision: fp32 (default), bf16 (fast where the CPU or GPU has it natively: "
                  "AVX-512-BF16, AMX, recent GPUs; emulated and slow elsewhere), auto (bf16 where native, "
                  "else fp32), fp16 (GPU only)")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=DEFAULT.device, help="auto (default), cpu, cuda, cuda:N or mps")


def add_quiet(p: argparse.ArgumentParser, help: str = "no progress bar") -> None:
    p.add_argument("-q", "--quiet", action="store_true", help=help)


def add_precision(p: argparse.ArgumentParser, help: str = PRECISION_HELP) -> None:
    p.add_argument("--precision", default=None, choices=PRECISION_CHOICES, help=help)


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The options of the loaded models (one Pipeline serves many jobs), shared by generate, batch and
    serve: the weights and the runtime (:class:`~avct.inference.options.RuntimeOptions`)."""
    p.add_argument("--checkpoint", action="append",
                   help="directory with the official generator.ckpt + audio2pose.ckpt, avct weights, or an "
                        "`avct train` run; repeat to combine (e.g. an avct run + a headmotion run). "
                        "Default: the small weights bundled with avct (see their MODEL_CARD.md)")
    add_device(p)
    add_precision(p)
    p.add_argument("--batch-size", type=int,
                   help=f"frames rendered per batch (default {DEFAULT.batch_size})")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads of the networks (default: torch's, one per core)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the renderer (faster on GPUs; on CPUs on par with the eager fast path, measured)")
    p.add_argument("--backend", default=None, choices=BACKENDS,
                   help="renderer runtime: auto (default: openvino-int8 where its model of these weights is "
                        "prepared, as setup.sh does for the bundled ones, else torch), torch, openvino (fp32, "
                        "CPU), openvino-int8 (CPU, int8 convolutions, PSNR ~40 dB; the first run with new "
                        "weights converts them, cached after)")


def runtime_options(args: argparse.Namespace, official: bool = False) -> RuntimeOptions:
    """The RuntimeOptions of ``add_model_options``' arguments; ``official``: the paper's exact output's
    (fp32, the torch renderer) where the user did not choose otherwise."""
    base = RuntimeOptions.official() if official else RuntimeOptions()
    chosen = {"device": args.device, "precision": args.precision, "batch_size": args.batch_size,
              "threads": args.threads, "compile": args.compile, "backend": args.backend}
    return base.replace(**{name: value for name, value in chosen.items() if value is not None})


def load_pipeline(args: argparse.Namespace, runtime: RuntimeOptions | None = None) -> "Pipeline":
    """The Pipeline of ``add_model_options``' arguments (``runtime``: already built from them)."""
    from ..inference.pipeline import Pipeline

    return Pipeline.load(args.checkpoint, runtime or runtime_options(args))


def require_file(what: str, path: str | Path | None) -> None:
    """AvctError unless ``path`` (if given) is an existing file: says 'not found' or 'is a folder'."""
    if path is None:
        return
    if Path(path).is_dir():
        raise AvctError(f"{what} is a folder, not a file: {path}")
    if not Path(path).is_file():
        raise AvctError(f"{what} not found: {path}")
