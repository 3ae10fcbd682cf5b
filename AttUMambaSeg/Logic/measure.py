"""Re-measure after the user edited the lesion segments: export, send to the backend, refresh in place.

The backend keeps the numbering of a labelmap with several values but splits a labelmap with
a single value into its connected components (DESIGN.md §4). With one segment left, its
components are therefore merged back into one lesion here, so a lesion the user sees stays
one row in the table whatever the backend counted.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .client import BackendClient, BackendError
from .results import CT_ROLE, PET_ROLE, STUDY_ATTRIBUTE, LesionResult, refresh
from .segments import export_labelmap, label_values
from .volumes import write_image, write_volume


def update_measurements(client: BackendClient, segmentation_node, *, study_id: str | None = None,
                        ct_node=None, pet_node=None) -> LesionResult:
    """Measure the segments as they are now and show the new report in the result's table and lines.

    The backend measures against the study it holds (``study_id``, else the one stored on the
    node). When it no longer has it (restarted, expired) and the CT and PET nodes are known,
    they are uploaded again once. Returns the refreshed result (its ``report`` is the new one).
    """
    result = LesionResult.of(segmentation_node)
    study_id = study_id or result.study_id
    ct_node = ct_node or segmentation_node.GetNodeReference(CT_ROLE)
    pet_node = pet_node or segmentation_node.GetNodeReference(PET_ROLE)
    values = label_values(segmentation_node.GetSegmentation())
    labels, ijk_to_ras = export_labelmap(segmentation_node, values)
    with tempfile.TemporaryDirectory(prefix="attumamba-measure-") as folder:
        labelmap_file = write_image(labels, ijk_to_ras, Path(folder) / "edited.nrrd")
        report, study_id = _measure(client, study_id, labelmap_file, ct_node, pet_node, Path(folder))
    refresh(result, merge_single_label(report, labels))
    segmentation_node.SetAttribute(STUDY_ATTRIBUTE, study_id)
    return result


def _measure(client: BackendClient, study_id: str | None, labelmap_file: Path, ct_node, pet_node,
             folder: Path) -> tuple[dict, str]:
    if study_id:
        try:
            return client.measure(study_id, labelmap_file), study_id
        except BackendError as error:
            if error.status != 404 or ct_node is None or pet_node is None:
                raise
    if ct_node is None or pet_node is None:
        raise ValueError("the backend needs the study to measure: give its study ID, or the CT and PET volumes")
    study = client.upload_study(write_volume(ct_node, folder / "ct.nrrd"), write_volume(pet_node, folder / "pet.nrrd"),
                                meta={"source": "AttUMambaSeg re-measure"})
    return client.measure(study["study_id"], labelmap_file), study["study_id"]


def merge_single_label(report: dict, labels: np.ndarray) -> dict:
    """Undo the backend's component split when ``labels`` holds one value: one lesion with that value."""
    present = np.unique(labels[labels > 0])
    if present.size != 1 or not report["lesions"]:
        return report
    value = int(present[0])
    if len(report["lesions"]) == 1:
        return {**report, "lesions": [{**report["lesions"][0], "id": value}]}
    totals = {**report.get("totals", {}), "n_lesions": 1}
    return {**report, "lesions": [merge_lesions(report["lesions"], value)], "totals": totals}


def merge_lesions(parts: list[dict], lesion_id: int) -> dict:
    """One lesion from several: sums, maxima, voxel-weighted means, the longest RECIST long axis.

    The weighted means count labelmap voxels, so they are exact for CT and approximate for a
    PET on a coarser grid (the backend reads SUV on the PET grid).
    """
    voxels = np.array([part["voxels"] for part in parts], float)

    def total(key: str) -> float | None:
        values = [part[key] for part in parts]
        return None if any(v is None for v in values) else float(sum(values))

    def weighted(key: str) -> float | None:
        values = [part[key] for part in parts]
        return None if any(v is None for v in values) else float(np.dot(values, voxels) / voxels.sum())

    def highest(key: str) -> float | None:
        values = [part[key] for part in parts if part[key] is not None]
        return float(max(values)) if values else None

    longest = max(parts, key=lambda part: part["recist"]["long_axis_mm"])
    centroid = np.average(np.array([part["centroid_lps"] for part in parts], float), axis=0, weights=voxels)
    return {"id": lesion_id, "voxels": int(voxels.sum()), "volume_ml": total("volume_ml"),
            "suv_max": highest("suv_max"), "suv_mean": weighted("suv_mean"), "suv_peak": highest("suv_peak"),
            "tlg": total("tlg"), "ct_mean_hu": weighted("ct_mean_hu"),
            "centroid_lps": [float(c) for c in centroid], "recist": dict(longest["recist"]),
            "merged_components": len(parts)}
