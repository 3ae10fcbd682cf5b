"""Evaluate a folder of predicted masks against a folder of ground-truth masks.

Cases are paired by file name. A prediction on another grid of the same frame of reference
is resampled onto the ground truth's by nearest neighbour (labels are never interpolated).
Writes ``per_case.csv``/``per_case.json`` and ``summary.json`` (NaN-aware mean, median and
standard deviation, with how many cases each metric counts, e.g. FNV skips empty ground truth).
The summary also holds the lesions summed over cases (TP, FP, FN, precision, recall, F1 by
autoPET V's rule, ``attumamba.metrics``) and, under ``by_tracer``, the same for the cases of
each tracer (``training.case_tracers`` says where a case's tracer comes from).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

from ..errors import CancelledError, InputError
from ..io.resample import resample_to, same_grid
from ..io.volume import volume_suffix
from ..metrics import DETECTION_RULE, evaluate_case, summed_detection
from .case_tracers import case_tracers


def _cases(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder of masks (.nii.gz, .nrrd, .mha)")
    cases = {}
    for path in sorted(folder.iterdir()):
        suffix = volume_suffix(path)
        if suffix and path.is_file():
            cases[path.name[: -len(suffix)]] = path
    return cases


def summarise(rows: list[dict]) -> dict:
    metrics = [k for k in rows[0] if k not in ("case", "tracer")] if rows else []
    summary = {}
    for name in metrics:
        values = np.array([row[name] for row in rows], float)
        finite = values[~np.isnan(values)]
        summary[name] = {
            "mean": float(finite.mean()) if finite.size else None,
            "median": float(np.median(finite)) if finite.size else None,
            "std": float(finite.std()) if finite.size else None,
            "n": int(finite.size),
        }
    return summary


def _no_nan(values: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}


def summarise_cases(rows: list[dict]) -> dict:
    """Per-metric statistics over ``rows`` and their lesions summed (``lesion_tp`` -> ``lesions['tp']``)."""
    lesions = {k[len("lesion_"):]: v for k, v in summed_detection(rows).items()}
    return {"cases": len(rows), "lesions": _no_nan(lesions), "metrics": summarise(rows)}


def evaluate_folders(
    pred_dir: str | Path, gt_dir: str | Path, out_dir: str | Path, *, tolerance_mm: float = 2.0,
    tracers: dict[str, str] | None = None, tracer: str | None = None,
    progress: Callable[[float, str], None] | None = None, cancel: Callable[[], bool] | None = None,
) -> tuple[list[dict], dict, list[str]]:
    """Evaluate every ground-truth case; returns (per-case rows, summary, cases without a prediction).

    ``tracers`` (case -> tracer) and ``tracer`` (every other case) feed the per-tracer summaries.
    """
    preds, gts = _cases(Path(pred_dir)), _cases(Path(gt_dir))
    if not gts:
        raise InputError(f"no ground-truth masks (.nii.gz, .nrrd, .mha) in {gt_dir}")
    missing = sorted(set(gts) - set(preds))
    tracer_of = case_tracers(set(gts) & set(preds), tracers, tracer)
    rows = []
    for n, case in enumerate(sorted(set(gts) & set(preds))):
        if cancel is not None and cancel():
            raise CancelledError(f"stopped after {n} cases; nothing was written")
        if progress is not None:
            progress(n / len(gts), case)
        gt, pred = sitk.ReadImage(str(gts[case])), sitk.ReadImage(str(preds[case]))
        if not same_grid(pred, gt):
            pred = resample_to(pred, gt, kind="label")
        spacing = gt.GetSpacing()[::-1]  # array axis order [z, y, x]
        scores = evaluate_case(sitk.GetArrayViewFromImage(pred), sitk.GetArrayViewFromImage(gt), spacing, tolerance_mm)
        rows.append({"case": case, "tracer": tracer_of[case], **scores})
    if not rows:
        raise InputError(f"no prediction in {pred_dir} has the name of a ground-truth mask in {gt_dir}")
    summary = {"missing_predictions": missing, "tolerance_mm": tolerance_mm, "lesion_rule": DETECTION_RULE,
               **summarise_cases(rows),
               "by_tracer": {name: summarise_cases([row for row in rows if row["tracer"] == name])
                             for name in sorted({row["tracer"] for row in rows} - {""})}}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "per_case.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()} for row in rows)
    (out / "per_case.json").write_text(json.dumps([_no_nan(row) for row in rows], indent=1))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return rows, summary, missing
