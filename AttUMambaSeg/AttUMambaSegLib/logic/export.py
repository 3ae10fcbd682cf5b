"""Export a lesion result to a folder: labelmap, ``.seg.nrrd``, lesion CSV and JSON.

Every file is written to a temporary name and renamed into place, so a crash or a full disk
never leaves a half-written file where a good one was. Existing files are only replaced when
asked, and a report that no longer matches the segments (edited since the last
re-measurement) is refused rather than exported beside them.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import slicer

from .files import atomic_target, write_text_atomic
from .results import LesionResult
from .segments import export_labelmap, label_values
from .volumes import write_image

LABELMAP_SUFFIXES = (".nii.gz", ".nii", ".nrrd")
#: The backend's lesions.csv columns (attumamba.lesions.report.CSV_COLUMNS), then the segment name.
CSV_COLUMNS = ("id", "voxels", "volume_ml", "suv_max", "suv_mean", "suv_peak", "tlg", "ct_mean_hu",
               "centroid_x_lps", "centroid_y_lps", "centroid_z_lps", "long_axis_mm", "short_axis_mm",
               "slice_z_lps", "measurable", "segment")


def export_result(segmentation_node, folder: str | Path, *, labelmap_name: str = "lesions.nii.gz",
                  overwrite: bool = False, allow_stale: bool = False) -> dict[str, Path]:
    """Write the four files; return their paths by kind (labelmap, segmentation, csv, json)."""
    targets = export_targets(folder, labelmap_name)
    existing = [str(path) for path in targets.values() if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"would overwrite {', '.join(existing)}; choose another folder or allow overwriting")
    report = LesionResult.of(segmentation_node).report
    labels, ijk_to_ras = export_labelmap(segmentation_node, label_values(segmentation_node.GetSegmentation()))
    stale = stale_lesions(report, labels)
    if stale and not allow_stale:
        raise ValueError(f"the measurements of lesions {stale} are out of date (segments edited since); "
                         "update the measurements first")
    targets["labelmap"].parent.mkdir(parents=True, exist_ok=True)
    write_image(labels, ijk_to_ras, targets["labelmap"], compress=True)
    write_segmentation(segmentation_node, targets["segmentation"])
    write_text_atomic(targets["csv"], lesions_csv(report))
    write_text_atomic(targets["json"], json.dumps(report, indent=2, allow_nan=False))
    return targets


def export_targets(folder: str | Path, labelmap_name: str) -> dict[str, Path]:
    suffix = next((s for s in LABELMAP_SUFFIXES if labelmap_name.lower().endswith(s)), None)
    if suffix is None or len(labelmap_name) == len(suffix):
        raise ValueError(f"the labelmap file name {labelmap_name!r} must end with {', '.join(LABELMAP_SUFFIXES)}")
    folder = Path(folder)
    stem = labelmap_name[: -len(suffix)]
    return {"labelmap": folder / labelmap_name, "segmentation": folder / f"{stem}.seg.nrrd",
            "csv": folder / f"{stem}.csv", "json": folder / f"{stem}.json"}


def stale_lesions(report: dict, labels: np.ndarray) -> list[int]:
    """Lesion numbers whose voxel count in ``labels`` differs from the report (or that only one has)."""
    counts = np.bincount(labels.ravel())
    in_labels = {value: int(counts[value]) for value in np.flatnonzero(counts[1:]) + 1}
    in_report = {int(lesion["id"]): int(lesion["voxels"]) for lesion in report["lesions"]}
    return sorted(int(v) for v in set(in_labels) | set(in_report) if in_labels.get(v) != in_report.get(v))


def write_segmentation(segmentation_node, path: Path) -> Path:
    """The segmentation as Slicer's ``.seg.nrrd`` (segment names, colours, terminology kept)."""
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetUseCompression(True)
    with atomic_target(path) as temporary:
        storage.SetFileName(str(temporary))
        if not storage.WriteData(segmentation_node):
            raise OSError(f"Slicer could not write {path}")
    return path


def lesions_csv(report: dict) -> str:
    """One row per lesion with the backend's columns (LPS centroid, RECIST) and the segment name."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for lesion in report["lesions"]:
        recist = lesion["recist"]
        x, y, z = lesion["centroid_lps"]
        writer.writerow({**{key: lesion.get(key) for key in CSV_COLUMNS[:8]},
                         "centroid_x_lps": x, "centroid_y_lps": y, "centroid_z_lps": z,
                         "long_axis_mm": recist["long_axis_mm"], "short_axis_mm": recist["short_axis_mm"],
                         "slice_z_lps": recist["slice_z_lps"], "measurable": recist["measurable"],
                         "segment": lesion.get("segment", "")})
    return buffer.getvalue()
