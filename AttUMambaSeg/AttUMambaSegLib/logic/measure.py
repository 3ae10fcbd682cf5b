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
from .staged import StagedWork
from .volumes import write_image, write_volume


def update_measurements(client: BackendClient, segmentation_node, *, study_id: str | None = None,
                        ct_node=None, pet_node=None) -> LesionResult:
    """Measure the segments as they are now and show the new report in the result's table and lines.

    Waits (scripts, tests); the GUI steps a :class:`Measuring` from its timer. Returns the
    refreshed result (its ``report`` is the new one); raises :class:`~.staged.RunCancelled` if cancelled.
    """
    return Measuring(client, segmentation_node, study_id=study_id, ct_node=ct_node, pet_node=pet_node).wait()


class Measuring(StagedWork):
    """Re-measuring from a GUI timer: the segments are exported here (MRML belongs to the main
    thread), the labelmap goes to the backend in a helper process (:mod:`.transfers`), and
    :meth:`step` refreshes the table and lines once the report is back.

    The backend measures against the study it holds (``study_id``, else the one stored on the
    node). When it no longer has it (restarted, expired) and the CT and PET nodes are known,
    they are written here and uploaded once. Cancelling leaves every node as it was.
    """

    STAGE_START = {"upload": 0.0, "measure": 0.6}
    WHAT = "re-measuring"
    CANCELLED = "re-measuring was cancelled; the table and lines are unchanged"

    def __init__(self, client: BackendClient, segmentation_node, *, study_id: str | None = None,
                 ct_node=None, pet_node=None):
        super().__init__("measure", "measuring on the backend", None, "attumamba-measure")
        self.client, self.segmentation, self._result = client, segmentation_node, LesionResult.of(segmentation_node)
        self._ct = ct_node or segmentation_node.GetNodeReference(CT_ROLE)
        self._pet = pet_node or segmentation_node.GetNodeReference(PET_ROLE)
        self.study_id, self._uploaded = study_id or self._result.study_id, False
        if not self.study_id and not self._can_upload:
            raise ValueError("the backend needs the study to measure: give its study ID, or the CT and PET volumes")
        self._labels, ijk_to_ras = export_labelmap(segmentation_node, label_values(segmentation_node.GetSegmentation()))
        self._folder = Path(tempfile.mkdtemp(prefix="attumamba-measure-"))
        try:
            self._labelmap = write_image(self._labels, ijk_to_ras, self._folder / "edited.nrrd")
        except BaseException:
            self._close()
            raise

    @property
    def cancelled(self) -> bool:
        return self.state == "cancelled"

    def _start_work(self) -> None:
        """The first piece (each later one starts when the one before it finished)."""
        if self.study_id:
            self._transfer(("measure", self.study_id, self._labelmap))
        else:
            self._upload()

    def _finished_work(self, transfer) -> None:
        if self.stage == "upload":
            self.study_id, self._uploaded = transfer.result()["study_id"], True
            self._enter("measure", "measuring on the backend")
            self._transfer(("measure", self.study_id, self._labelmap))
            return
        try:
            report = transfer.result()
        except BackendError as error:
            if error.status != 404 or self._uploaded or not self._can_upload:
                raise
            self._upload()  # the backend no longer holds the study: send it once
            return
        refresh(self._result, merge_single_label(report, self._labels))
        self.segmentation.SetAttribute(STUDY_ATTRIBUTE, self.study_id)
        self.result = self._result
        count = len(self._result.report["lesions"])
        self._finish("done", f"{count} lesion{'s' if count != 1 else ''} measured")

    @property
    def _can_upload(self) -> bool:
        return self._ct is not None and self._pet is not None

    def _upload(self) -> None:
        """Write the CT and PET (MRML: this thread) and send them as a new study."""
        self._enter("upload", "sending the CT and PET")
        volumes = write_volume(self._ct, self._folder / "ct.nrrd"), write_volume(self._pet, self._folder / "pet.nrrd")
        self._transfer(("upload_study", *volumes, {"source": "AttUMambaSeg re-measure"}))


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
