"""Writing an evaluation: per-video CSV, ``summary.json``, ``summary.md`` (Table-1 layout) and PNG plots.

Every file is written atomically (:mod:`avct.io_utils`), so an interrupted run never leaves a half
report that looks complete. Missing values are ``null`` in JSON, empty in the CSV and "—" in Markdown:
a metric that could not be computed is never shown as a number.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..io_utils import atomic_path, atomic_write_text
from ..media import FPS

__all__ = ["CSV_COLUMNS", "write_csv", "write_json", "write_markdown", "write_plots", "markdown_table",
           "TABLE_COLUMNS", "METRIC_NOTES", "format_number"]

CSV_COLUMNS = (
    "name", "generated", "reference", "frames_generated", "frames_reference", "fps_generated",
    "fps_reference", "fid_video", "cpbd", "cpbd_reference", "lmd", "lmd_frames", "lip_r", "lip_amp",
    "silence_gap", "lip_best_lag", "lip_r_best_lag", "sharpness", "blinks_per_min", "blinks_per_min_reference",
    "eye_closure", "eye_closure_reference", "head_motion", "avoff", "avconf", "lse_d",
    "avoff_reference", "avconf_reference",
    "lse_d_reference", "note",
)
# (JSON key, Table-1 header, decimals)
TABLE_COLUMNS = (("fid", "FID↓", 3), ("cpbd", "CPBD↑", 3), ("lmd", "LMD↓", 3), ("lip_r", "lip r↑", 2),
                 ("lip_amp", "lip amp(→1)", 2), ("silence_gap", "silence gap(→0)", 3),
                 ("sharpness", "sharpness(→1)", 2), ("blinks_per_min", "blinks/min", 1),
                 ("eye_closure", "eye closure↓", 2), ("head_motion", "head motion(→1)", 2),
                 ("avoff", "AVOff(→0)", 2), ("avconf", "AVConf↑", 2))
# What each column means, for the reports (summary.md here, the held-out comparison in avct.eval.heldout).
METRIC_NOTES = (
    "- FID: Fréchet distance of Inception-v3 pool_3 features (the TF FID network), all frames pooled "
    "(the per-video FID below uses one video's frames only and is biased upward for short clips).",
    "- CPBD: sharpness of grayscale frames (higher is sharper), mean over frames.",
    "- LMD: mean distance of the 20 mouth landmarks after removing translation, in-plane rotation "
    "and scale (units of the inter-ocular distance), mean over frames and points.",
    "- lip r / lip amp: correlation (1 = in time with the real lips, 0 = frozen mouth) and std ratio "
    "(1 = opens as much as the real mouth) of the inner-lip aperture (dlib landmarks, inter-ocular "
    "units) against the real clip at the same times; silence gap: mean generated − real aperture in "
    "pauses of the speech (> 0: the mouth hangs open); mean over videos (avct.eval.lips). Per video "
    "(per_video.csv, with --every 1): lip_best_lag, the shift of the real clip within ±3 frames at which "
    "lip r peaks (> 0: the real mouth moves later), and lip_r_best_lag, r there; a peak away from 0 is "
    "timing, the generated mouth's or the real clip's own sound-to-picture offset.",
    "- sharpness: variance of the Laplacian of the face box at 128², median generated / median real.",
    "- blinks/min and eye closure (with --every 1): blinks found in the eye aspect ratio of dlib's eye "
    "points relative to the video's open level (below 0.70, back above 0.75, at most 1 s), and the lowest "
    "such ratio (1: the eyes never close), mean over videos (avct.eval.eyes); the Ground Truth row gives "
    "the real clips' own. head motion: the nose tip's spread (inter-ocular units) ÷ the real clip's "
    "(1: moves as much as the speaker; avct.eval.head_motion).",
    "- AVOff / AVConf: SyncNet offset (frames; > 0: audio leads) and confidence, mean over videos.",
    "- Ground Truth: FID and LMD 0, lip r, lip amp, sharpness and head motion 1, silence gap 0 by "
    "definition; CPBD, blinks and SyncNet scores of the reference videos.",
)


def _clean(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN/inf to None (null)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(_clean(data), indent=2, ensure_ascii=False) + "\n")


def _csv_cell(value: Any) -> Any:
    value = _clean(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(row.get(k)) for k in CSV_COLUMNS})
    atomic_write_text(path, buf.getvalue())


def format_number(value: Any, decimals: int) -> str:
    value = _clean(value)
    if value is None:
        return "—"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:.{decimals}f}"


def markdown_table(summary: dict[str, Any], label: str = "Generated") -> str:
    """The paper's Table-1 row layout: the generated videos, then the ground truth (reference)."""
    head = "| Method | " + " | ".join(h for _, h, _ in TABLE_COLUMNS) + " |"
    sep = "|---|" + "---:|" * len(TABLE_COLUMNS)
    cells = " | ".join(format_number(summary.get(k), d) for k, _, d in TABLE_COLUMNS)
    rows = [head, sep, f"| {label} | {cells} |"]
    ref = summary.get("reference") or {}
    rows.append("| Ground Truth | " + " | ".join(format_number(ref.get(k), d) for k, _, d in TABLE_COLUMNS) + " |")
    return "\n".join(rows)


def write_markdown(path: Path, summary: dict[str, Any], rows: Sequence[dict[str, Any]]) -> None:
    lines = ["# Evaluation", "", markdown_table(summary), ""]
    frames = summary.get("frames", {})
    lines += [
        f"{summary.get('videos', len(rows))} video pair(s); frames evaluated: FID {frames.get('fid_generated', 0)} "
        f"generated vs {frames.get('fid_reference', 0)} reference, CPBD {frames.get('cpbd', 0)}, "
        f"LMD {frames.get('lmd', 0)} frame pairs, SyncNet {frames.get('sync', 0)} clips.",
        "",
        *METRIC_NOTES,
    ]
    notes = summary.get("notes") or []
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    lines += ["", "## Per video", "",
              "| Video | FID | CPBD | LMD | lip r | lip amp | silence gap | sharpness | blinks/min (real) "
              "| eye closure (real) | head motion | AVOff | AVConf | note |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {format_number(r.get('fid_video'), 2)} | {format_number(r.get('cpbd'), 3)} | "
                     f"{format_number(r.get('lmd'), 3)} | {format_number(r.get('lip_r'), 2)} | {format_number(r.get('lip_amp'), 2)} | "
                     f"{format_number(r.get('silence_gap'), 3)} | {format_number(r.get('sharpness'), 2)} | "
                     f"{format_number(r.get('blinks_per_min'), 1)} ({format_number(r.get('blinks_per_min_reference'), 1)}) | "
                     f"{format_number(r.get('eye_closure'), 2)} ({format_number(r.get('eye_closure_reference'), 2)}) | "
                     f"{format_number(r.get('head_motion'), 2)} | "
                     f"{format_number(r.get('avoff'), 0)} | {format_number(r.get('avconf'), 2)} | {r.get('note') or ''} |")
    lines.append("")
    atomic_write_text(path, "\n".join(lines))


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def write_plots(out_dir: Path, per_video: Sequence[dict[str, Any]], max_lines: int = 8) -> list[Path]:
    """PNG plots: per-frame LMD/CPBD, lip apertures, and with SyncNet scores per-frame confidence +
    offset histogram.

    ``per_video`` items: ``name`` and arrays ``lmd_series`` (frame index, value), ``cpbd_series``,
    ``aperture_series`` (optional: ``frames``, ``generated``, ``real`` aperture curves), ``sync_conf``
    (per clip, or None), ``avoff`` (int or None). Returns the files written.
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend state, Agg rendering for PNG

    written: list[Path] = []
    shown = list(per_video)[:max_lines]

    fig = Figure(figsize=(8, 6))
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    for v in shown:
        if len(v.get("lmd_series", ())):
            s = np.asarray(v["lmd_series"])
            ax1.plot(s[:, 0], s[:, 1], lw=1, label=v["name"])
        if len(v.get("cpbd_series", ())):
            s = np.asarray(v["cpbd_series"])
            ax2.plot(s[:, 0], s[:, 1], lw=1, label=v["name"])
    ax1.set_ylabel("LMD (inter-ocular units)")
    ax1.set_title("Mouth landmark distance per frame (generated vs reference)")
    ax2.set_ylabel("CPBD (generated)")
    ax2.set_xlabel("frame")
    if shown:
        ax1.legend(fontsize=7, loc="upper right")
    _save(fig, out_dir / "per_frame.png")
    written.append(out_dir / "per_frame.png")

    lips = [v for v in shown if v.get("aperture_series") and len(v["aperture_series"]["frames"])]
    if lips:
        fig = Figure(figsize=(8, 1.8 * len(lips) + 0.6))
        axes = np.atleast_1d(fig.subplots(len(lips), 1, sharex=True))
        for ax, v in zip(axes, lips):
            s = v["aperture_series"]
            ax.plot(s["frames"], s["real"], lw=1, color="0.3", label="real")
            ax.plot(s["frames"], s["generated"], lw=1, color="tab:red", label="generated")
            ax.set_ylabel("aperture")
            ax.set_title(v["name"], fontsize=8)
        axes[0].legend(fontsize=7, loc="upper right")
        axes[-1].set_xlabel("frame")
        fig.suptitle("Inner-lip aperture (inter-ocular units): generated vs real")
        _save(fig, out_dir / "lip_aperture.png")
        written.append(out_dir / "lip_aperture.png")

    synced = [v for v in per_video if v.get("sync_conf") is not None]
    if synced:
        fig = Figure(figsize=(8, 3.5))
        ax = fig.subplots()
        for v in synced[:max_lines]:
            conf = np.asarray(v["sync_conf"])
            ax.plot(np.arange(len(conf)) / FPS, conf, lw=1, label=f"{v['name']} (AVOff {v['avoff']})")
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("SyncNet confidence")
        ax.set_title("Per-frame sync confidence (median-filtered, at the best offset)")
        ax.legend(fontsize=7, loc="upper right")
        _save(fig, out_dir / "sync_confidence.png")
        written.append(out_dir / "sync_confidence.png")

        offsets = [v["avoff"] for v in synced if v.get("avoff") is not None]
        fig = Figure(figsize=(6, 3.5))
        ax = fig.subplots()
        ax.hist(offsets, bins=np.arange(-15.5, 16.5, 1.0), color="tab:blue", edgecolor="white")
        ax.set_xlabel("AVOff (frames; > 0: audio leads)")
        ax.set_ylabel("videos")
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.set_title("SyncNet offset of the generated videos")
        _save(fig, out_dir / "avoff_histogram.png")
        written.append(out_dir / "avoff_histogram.png")
    return written
