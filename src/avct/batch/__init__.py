"""``avct batch``: many videos from one manifest, with the models loaded once.

The manifest is CSV (a header row) or JSONL (one JSON object per line), one video per row:

* ``image``, ``audio`` (required): paths, relative to the manifest's folder unless absolute;
* ``output`` (optional): a file name or relative path inside the output folder (``..`` and absolute
  paths are refused); without it ``<image stem>__<audio stem>.mp4``, numbered ``-2``, ``-3``, ... when
  several rows would get the same name;
* any :class:`~avct.inference.options.GenerateOptions` name as a column (``transcript``, ``still``,
  ``pose_scale``, ...), parsed by ``GenerateOptions.from_mapping`` (empty cells mean the default);
  ``phonemes``, ``pose_from`` and a transcript *file* are paths relative to the manifest too.

Resumable: a row whose output exists is skipped (outputs are written atomically, so a present file is
complete). A row that fails is recorded with a one-line reason and the run goes on. Every row ends up
in the report (``report.csv``: row, image, audio, output, status done|skipped|failed, seconds, reason),
rewritten after each row.

Several processes: under ``torchrun --nproc_per_node N -m avct batch ...`` (or any launcher that sets
``RANK`` and ``WORLD_SIZE``) process ``RANK`` takes the rows ``i % WORLD_SIZE == RANK`` (``i`` counting
data rows from 0) and writes its own ``report.rank{RANK}.csv``; no process group is needed. Output
names are planned over the whole manifest, so every process (and every rerun) agrees on them. (The CLI
exits 0 in that case even when rows failed: torchrun stops all processes when one exits non-zero.)
"""
from .manifest import Job, plan_jobs, read_manifest
from .run import BatchReport, RowResult, process_share, report_name, run_batch, run_job

__all__ = ["Job", "plan_jobs", "read_manifest", "BatchReport", "RowResult", "process_share", "report_name",
           "run_batch", "run_job"]
