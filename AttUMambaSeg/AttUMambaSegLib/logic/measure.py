"""Re-measure after the user edited the lesion segments: export, send to the backend, refresh in place.

The backend keeps the numbering of a labelmap with several values but splits a labelmap with
a single value into its connected components (DESIGN.md §4). With one segment left, its
components are therefore merged back into one lesion here, so a lesion the user sees stays
one row in the table whatever the backend counted.
"""

from __future__ import annotations

import shutil
import tempfile
from concurrent import futures
from pathlib import Path

import numpy as np

from .client import BackendClient, BackendError
from .results import CT_ROLE, PET_ROLE, STUDY_ATTRIBUTE, LesionResult, refresh
from .run import RunCancelled
from .segments import export_labelmap, label_values
from .volumes import write_image, write_volume
from .workers import in_background


def update_measurements(client: BackendClient, segmentation_node, *, study_id: str | None = None,
                        ct_node=None, pet_node=None) -> LesionResult:
    """Measure the segments as they are now and show the new report in the result's table and lines.

    Waits (scripts, tests); the GUI steps a :class:`Measuring` from its timer. Returns the
    refreshed result (its ``report`` is the new one).
    """
    return Measuring(client, segmentation_node, study_id=study_id, ct_node=ct_node, pet_node=pet_node).wait()


class Measuring:
    """Re-measuring from a GUI timer: the segments are exported here (MRML belongs to the main
    thread), the upload and the measurement run on a worker thread, and :meth:`step` refreshes
    the table and lines once the report is back.

    The backend measures against the study it holds (``study_id``, else the one stored on the
    node). When it no longer has it (restarted, expired) and the CT and PET nodes are known,
    they are written here and uploaded once. Cancelling leaves every node as it was.
    """

    def __init__(self, client: BackendClient, segmentation_node, *, study_id: str | None = None,
                 ct_node=None, pet_node=None):
        self.segmentation, self.result, self.error, self.cancelled = segmentation_node, None, None, False
        self._client, self._result = client, LesionResult.of(segmentation_node)
        self._ct = ct_node or segmentation_node.GetNodeReference(CT_ROLE)
        self._pet = pet_node or segmentation_node.GetNodeReference(PET_ROLE)
        self._labels, ijk_to_ras = export_labelmap(segmentation_node, label_values(segmentation_node.GetSegmentation()))
        self._folder = Path(tempfile.mkdtemp(prefix="attumamba-measure-"))
        try:
            self._labelmap = write_image(self._labels, ijk_to_ras, self._folder / "edited.nrrd")
            study_id = study_id or self._result.study_id
            volumes = None if study_id else self._write_volumes()
        except BaseException:
            shutil.rmtree(self._folder, ignore_errors=True)
            raise
        self._request = in_background(_measure, client, study_id, self._labelmap, volumes, self._can_upload)

    @property
    def _can_upload(self) -> bool:
        return self._ct is not None and self._pet is not None

    def step(self) -> bool:
        """True while the backend works; then refreshes the nodes (or keeps the error) and returns False."""
        if self.result is not None or self.error is not None or self.cancelled:
            return False
        if not self._request.done():
            return True
        try:
            report, study_id = self._request.result()
            if report is None:  # the backend no longer holds the study: upload it once
                self._request = in_background(_measure, self._client, None, self._labelmap, self._write_volumes(), False)
                return True
            refresh(self._result, merge_single_label(report, self._labels))
            self.segmentation.SetAttribute(STUDY_ATTRIBUTE, study_id)
            self.result = self._result
        except Exception as error:  # noqa: BLE001 - shown to the user; the nodes are unchanged
            self.error = error
        shutil.rmtree(self._folder, ignore_errors=True)
        return False

    def wait(self, poll_s: float = 0.05) -> LesionResult:
        """Finish in this thread (scripts): the refreshed result, or the error that stopped it."""
        while self.step():
            futures.wait([self._request], timeout=poll_s)
        if self.error is not None:
            raise self.error
        if self.cancelled:
            raise RunCancelled("re-measuring was cancelled; the table and lines are unchanged")
        return self.result

    def cancel(self) -> None:
        """Stop waiting: the backend's answer, when it comes, is dropped and no node changes."""
        if self.result is None and self.error is None and not self.cancelled:
            self.cancelled = True
            self._request.add_done_callback(lambda _: shutil.rmtree(self._folder, ignore_errors=True))

    def _write_volumes(self) -> tuple[Path, Path]:
        if not self._can_upload:
            raise ValueError("the backend needs the study to measure: give its study ID, or the CT and PET volumes")
        return write_volume(self._ct, self._folder / "ct.nrrd"), write_volume(self._pet, self._folder / "pet.nrrd")


def _measure(client: BackendClient, study_id: str | None, labelmap_file: Path, volumes: tuple[Path, Path] | None,
             can_upload: bool) -> tuple[dict | None, str | None]:
    """(report, study ID) from the backend; (None, None) when it lost the study and the caller can upload it.
    Without a study ID, ``volumes`` are given (:class:`Measuring` writes them or refuses first)."""
    if study_id:
        try:
            return client.measure(study_id, labelmap_file), study_id
        except BackendError as error:
            if error.status != 404 or not can_upload:
                raise
            if volumes is None:
                return None, None
    study = client.upload_study(*volumes, meta={"source": "AttUMambaSeg re-measure"})
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
