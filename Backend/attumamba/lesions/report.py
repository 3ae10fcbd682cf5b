"""The lesion report of DESIGN.md §4: per-lesion volume, SUV, HU, centroid and RECIST axes, and totals."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import InputError
from ..io import check_same_space
from ..io.patient import patient_of
from ..response.sul import SulScale, sul_scale
from .crop import crop_index, crop_to_box_of, nonzero_box, paste_into
from .instances import as_array, filter_instances, instances_of, voxel_volume_ml
from .label_values import compact_labels, original_values
from .recist import Grid, recist_axes
from .uptake import PEAK_SPHERE_RADIUS_MM, intensity_stats, suv_peak

Patient = tuple  # (sex "M"/"F", height in m, weight in kg); see attumamba.io.patient

METHODS = {
    "instances": "18-connected components numbered by decreasing volume (autoPET); "
                 "a labelmap with several values keeps its own numbering",
    "volume": "voxel count x voxel volume on the labelmap grid",
    "suv": "on the PET grid (labels resampled by nearest neighbour); lesions without a PET voxel "
           "read the PET interpolated at their own voxels",
    "suv_peak": f"PERCIST: highest mean in a 1 cm3 sphere (r = {PEAK_SPHERE_RADIUS_MM:.2f} mm, voxels weighted by "
                "their fraction inside) centred on a lesion voxel",
    "sul": "SUV x lean body mass / weight (Janmahasatian) from the patient's sex, height and weight",
    "recist": "axial planes of the labelmap grid, largest 2D island per slice, sub-voxel contours (level 0.5); "
              "short axis = longest perpendicular chord that crosses the long axis, on the long axis' slice",
}


def analyze(labels: sitk.Image, ct: sitk.Image | None = None, pet_suv: sitk.Image | None = None, *,
            min_volume_ml: float = 0.0, min_suv_max: float | None = None, patient: Patient | None = None) -> dict:
    """The lesion report of a labelmap (binary mask or instance labels) with optional CT (HU) and PET (SUV)."""
    return analyze_instances(labels, ct, pet_suv, min_volume_ml=min_volume_ml, min_suv_max=min_suv_max,
                             patient=patient)[1]


def analyze_instances(labels: sitk.Image, ct: sitk.Image | None = None, pet_suv: sitk.Image | None = None, *,
                      min_volume_ml: float = 0.0, min_suv_max: float | None = None,
                      patient: Patient | None = None) -> tuple[sitk.Image, dict]:
    """The instance labelmap the report numbers, and the report.

    ``min_volume_ml`` drops smaller lesions; ``min_suv_max`` drops lesions whose SUVmax is
    below it (needs the PET). Components are renumbered by volume after dropping; a labelmap
    with its own numbering keeps it. ``patient`` (sex, height m, weight kg) gives SUL beside
    SUV; without it, what a DICOM PET carried is used (see :func:`with_sul`).
    """
    instances, report = _analyze_in_box(labels, ct, pet_suv, min_volume_ml, min_suv_max)
    if pet_suv is not None:
        with_sul(report, sul_scale(*(patient or patient_of(pet_suv))))
    return instances, report


def with_sul(report: dict, scale: SulScale) -> dict:
    """SULmax/mean/peak beside each lesion's SUV (None with the reason in ``report['sul']`` when unknown)."""
    report["sul"] = scale.describe()
    for lesion in report["lesions"]:
        for what in ("max", "mean", "peak"):
            lesion[f"sul_{what}"] = scale.sul(lesion[f"suv_{what}"])
    return report


def _analyze_in_box(labels, ct, pet_suv, min_volume_ml, min_suv_max) -> tuple[sitk.Image, dict]:
    for name, image in (("CT", ct), ("PET", pet_suv)):
        if image is not None:
            check_same_space(image, labels, names=(name, "labelmap"))
    if min_suv_max is not None and pet_suv is None:
        raise InputError("a minimum SUVmax needs the PET volume")
    labels, values = compact_labels(labels)  # ids like 5e6 or 2^31 ranked 1..K, reported as given
    box = nonzero_box(labels)
    if box is None or list(box[0]) == [0, 0, 0] and list(box[1]) == list(labels.GetSize()):
        return _analyze(labels, ct, pet_suv, min_volume_ml, min_suv_max, values)
    # measure on the lesions' neighbourhood; the instances go back onto the full grid
    low, high = box
    crop = crop_index(labels, low, high)
    ct_crop = crop_to_box_of(ct, crop) if ct is not None else None
    pet_crop = crop_to_box_of(pet_suv, crop) if pet_suv is not None else None
    instances, report = _analyze(crop, ct_crop, pet_crop, min_volume_ml, min_suv_max, values)
    report["grid"]["size"] = list(labels.GetSize())
    return paste_into(labels, instances, low), report


def _analyze(labels, ct, pet_suv, min_volume_ml, min_suv_max, values=None) -> tuple[sitk.Image, dict]:
    instances = instances_of(labels)
    renumber = instances is not labels  # components we numbered are renumbered; a user's numbering is kept
    if min_volume_ml > 0:
        instances = filter_instances(instances, min_volume_ml=min_volume_ml, renumber=renumber)
    if min_suv_max is not None:
        ids = _ids(instances)
        keep = set(ids[intensity_stats(pet_suv, instances, ids)["max"] >= min_suv_max].tolist())
        if len(keep) < len(ids):
            instances = filter_instances(instances, keep=keep, renumber=renumber)
    report = _report(instances, ct, pet_suv)
    if values is not None and not renumber:  # the labelmap's own (compacted) numbering: give its values back
        for lesion in report["lesions"]:
            lesion["id"] = int(values[lesion["id"] - 1])
        instances = original_values(instances, values)
    return instances, report


def _ids(instances: sitk.Image) -> np.ndarray:
    counts = np.bincount(as_array(instances).ravel())
    return np.flatnonzero(counts[1:]) + 1


def _report(instances: sitk.Image, ct: sitk.Image | None, pet: sitk.Image | None) -> dict:
    array = as_array(instances)
    ids = _ids(instances)
    grid = Grid.of(instances)
    counts = np.bincount(array.ravel(), minlength=array.max(initial=0) + 1)
    centroids_zyx = _coordinate_sums(array, counts.size)[ids] / counts[ids, None]
    centroids_lps = grid.to_lps(centroids_zyx[:, ::-1]) if ids.size else np.zeros((0, 3))
    volume = counts[ids] * voxel_volume_ml(instances)

    suv = intensity_stats(pet, instances, ids) if pet is not None and ids.size else None
    if suv is not None:
        fallback = np.asarray([pet.TransformPhysicalPointToContinuousIndex(tuple(map(float, c)))[::-1]
                               for c in centroids_lps]).round().astype(int)
        peaks = suv_peak(pet, instances, ids, fallback)
    hu = intensity_stats(ct, instances, ids) if ct is not None and ids.size else None

    boxes = ndimage.find_objects(array)
    lesions = []
    for n, lesion_id in enumerate(ids):
        box = boxes[lesion_id - 1]
        axes = recist_axes(array[box] == lesion_id, grid, offset_zyx=[s.start for s in box])
        entry = {"id": int(lesion_id), "voxels": int(counts[lesion_id]), "volume_ml": float(volume[n]),
                 "suv_max": None, "suv_mean": None, "suv_peak": None, "tlg": None, "ct_mean_hu": None,
                 "centroid_lps": [float(c) for c in centroids_lps[n]], "recist": axes.as_dict()}
        if suv is not None:
            entry.update(suv_max=float(suv["max"][n]), suv_mean=float(suv["mean"][n]), suv_peak=float(peaks[n]),
                         tlg=float(suv["mean"][n] * volume[n]))
        if hu is not None:
            entry["ct_mean_hu"] = float(hu["mean"][n])
        lesions.append(entry)
    return {
        "lesions": lesions,
        "totals": {
            "n_lesions": len(lesions), "mtv_ml": float(volume.sum()),
            "tlg": float(sum(e["tlg"] for e in lesions)) if suv is not None else None,
            "suv_max": float(max(e["suv_max"] for e in lesions)) if suv is not None and lesions else None,
        },
        "grid": {"size": list(instances.GetSize()), "spacing_mm": list(instances.GetSpacing()),
                 "slice_thickness_mm": grid.slice_thickness_mm, "axial_tilt_deg": grid.axial_tilt_deg},
        "methods": METHODS,
    }


def _coordinate_sums(array: np.ndarray, size: int) -> np.ndarray:
    """Per label, the sums of its voxels' (z, y, x) indices; one axis at a time to bound memory."""
    flat = np.flatnonzero(array)
    label = array.ravel()[flat]
    sums = np.zeros((size, 3))
    stride = 1
    for axis in (2, 1, 0):
        sums[:, axis] = np.bincount(label, weights=(flat // stride) % array.shape[axis], minlength=size)
        stride *= array.shape[axis]
    return sums


CSV_COLUMNS = ("id", "voxels", "volume_ml", "suv_max", "suv_mean", "suv_peak", "tlg", "ct_mean_hu", "sul_max",
               "sul_mean", "sul_peak",
               "centroid_x_lps", "centroid_y_lps", "centroid_z_lps", "long_axis_mm", "short_axis_mm",
               "slice_z_lps", "measurable")


def csv_rows(report: dict) -> list[dict]:
    """One flat row per lesion (the columns of ``CSV_COLUMNS``)."""
    rows = []
    for lesion in report["lesions"]:
        x, y, z = lesion["centroid_lps"]
        recist = lesion["recist"]
        rows.append({**{k: lesion.get(k) for k in CSV_COLUMNS[:11]}, "centroid_x_lps": x, "centroid_y_lps": y,
                     "centroid_z_lps": z, "long_axis_mm": recist["long_axis_mm"],
                     "short_axis_mm": recist["short_axis_mm"], "slice_z_lps": recist["slice_z_lps"],
                     "measurable": recist["measurable"]})
    return rows


def write_report(report: dict, folder: Path) -> tuple[Path, Path]:
    """``lesions.json`` and ``lesions.csv`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = folder / "lesions.json", folder / "lesions.csv"
    json_path.write_text(json.dumps(report, indent=2, allow_nan=False, default=_json_default))
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(csv_rows(report))
    return json_path, csv_path


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return None if isinstance(value, np.floating) and not math.isfinite(value) else value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
