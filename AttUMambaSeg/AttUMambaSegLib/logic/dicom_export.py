"""Export an (edited) lesion result as DICOM SEG + SR TID 1500, written by the backend with highdicom.

The module sends what the backend's ``POST /v1/studies/{id}/dicom`` takes: the segments as one
labelmap on the CT's grid and the CT (and PET) series' references from Slicer's DICOM database
(:mod:`.dicom_sources`); the backend measures the labelmap on the study it holds exactly as
*Update measurements* does, so the SR's numbers are the table's. A result whose table is out of
date (segments edited since) is refused until it is re-measured. If the backend no longer holds
the study (restarted, expired), the result is re-measured once (:class:`.measure.Measuring`
uploads the CT and PET again) and the export sent again. The two files are written atomically
into the chosen folder and never replace existing ones unless asked.

Stepped from the GUI timer like a segmentation run (:mod:`.staged`): MRML is read when the export
starts, headers and files go to a worker thread, the labelmap up and the zip down to the transfer
helper process (:meth:`.client.BackendClient.export_dicom`); cancelling writes nothing.
"""

from __future__ import annotations

import tempfile
import zipfile
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .client import BackendClient, BackendError
from .dicom_sources import DicomDatabase, dicom_references, source_files
from .export import stale_lesions
from .files import atomic_target
from .geometry import lps_from_ijk_to_ras
from .measure import Measuring
from .results import CT_ROLE, LesionResult
from .segments import export_labelmap, label_values
from .staged import StagedWork
from .volumes import shifted, world_ijk_to_ras, write_image

SEG_FILE, SR_FILE = "lesions_seg.dcm", "lesions_sr.dcm"   # as the backend names them in its zip
STAGE_START = {"references": 0.0, "send": 0.3, "remeasure": 0.4, "write": 0.95}


def dicom_targets(folder: str | Path) -> dict[str, Path]:
    return {"seg": Path(folder) / SEG_FILE, "sr": Path(folder) / SR_FILE}


def existing_dicom_files(folder: str | Path) -> list[str]:
    return [str(path) for path in dicom_targets(folder).values() if path.exists()]


class DicomExport(StagedWork):
    """One export of ``segmentation_node`` into ``folder``; ``result`` is ``{"seg": path, "sr": path}`` once done.

    Refused at once (ValueError, :class:`.dicom_sources.NotFromDicom`, FileExistsError) when the CT
    did not come from DICOM, the table is out of date, or the files exist and ``overwrite`` is not set.
    """

    STAGE_START = STAGE_START
    WHAT = "the DICOM export"
    CANCELLED = "cancelled; no file was written"

    def __init__(self, client: BackendClient, segmentation_node, folder: str | Path, database: DicomDatabase | None,
                 *, overwrite: bool = False, on_progress=None):
        self.targets, self.overwrite = dicom_targets(folder), overwrite
        existing = existing_dicom_files(folder)
        if existing and not overwrite:
            raise FileExistsError(f"would overwrite {', '.join(existing)}; choose another folder or allow overwriting")
        self._sources = source_files(segmentation_node, database)
        report = LesionResult.of(segmentation_node).report
        labels, ijk_to_ras = export_labelmap(segmentation_node, label_values(segmentation_node.GetSegmentation()))
        stale = stale_lesions(report, labels)
        if stale:
            raise ValueError(f"the measurements of lesions {stale} are out of date (segments edited since); press "
                             "Update measurements first, so that the SR holds the numbers of the segments")
        if not labels.any():
            raise ValueError("the segmentation holds no lesion: a DICOM SEG needs at least one segment")
        super().__init__("references", "reading the DICOM headers", on_progress, "attumamba-dicom")
        self.client, self.segmentation = client, segmentation_node
        self.result: dict[str, Path] | None = None
        self._model = str(report.get("model") or "")
        self._folder = Path(tempfile.mkdtemp(prefix="attumamba-dicom-"))  # removed when the export ends
        try:
            self._labelmap = write_image(*on_volume_grid(labels, ijk_to_ras, segmentation_node.GetNodeReference(CT_ROLE)),
                                         self._folder / "lesions.nrrd")
        except BaseException:
            self._close()
            raise
        self._references: dict | None = None
        self._archive = self._folder / "dicom.zip"   # the backend's answer
        self._measuring: Measuring | None = None
        self._remeasured = False

    def cancel(self) -> None:
        if self._measuring is not None:
            self._measuring.cancel()
        super().cancel()

    def _start_work(self) -> None:
        if self.stage == "references":
            self._run(dicom_references, self._sources)
        elif self.stage == "send":
            study_id = LesionResult.of(self.segmentation).study_id
            if not study_id:
                self._study_lost()
            else:
                self._transfer(("export_dicom", study_id, self._labelmap, self._references, self._archive, self._model))
        elif self.stage == "remeasure":
            self._step_measuring()
        elif self.stage == "write":
            self._run(write_dicom_files, self._archive, self.targets, self.overwrite)

    def _finished_work(self, future: Future) -> None:
        if self.stage == "references":
            self._references = future.result()
            self._enter("send", "the backend writes the DICOM SEG and SR")
        elif self.stage == "send":
            try:
                future.result()
            except BackendError as error:
                if error.status != 404:
                    raise
                self._study_lost()
            else:
                self._enter("write", "writing the files")
        elif self.stage == "write":
            self.result = future.result()
            self._finish("done", f"wrote {SEG_FILE} and {SR_FILE}")

    def _study_lost(self) -> None:
        """The backend does not hold the study (restarted, expired): re-measure (uploads it) once, then send again."""
        if self._remeasured:
            raise BackendError("the backend lost the study again while exporting; try again")
        self._enter("remeasure", "the backend no longer holds the study: sending the CT and PET again")

    def _step_measuring(self) -> None:
        if self._measuring is None:
            self._measuring = Measuring(self.client, self.segmentation)  # uploads the study when it is gone
        if self._measuring.step():
            return
        measuring, self._measuring, self._remeasured = self._measuring, None, True
        if measuring.error is not None:
            raise measuring.error
        self._enter("send", "the backend writes the DICOM SEG and SR")


def on_volume_grid(labels: np.ndarray, ijk_to_ras: np.ndarray, volume_node) -> tuple[np.ndarray, np.ndarray]:
    """The labelmap on ``volume_node``'s voxel grid (nearest neighbour), unchanged when it lies there already
    (a result segmented with Reference PET lies on the PET's grid; the SEG references the CT's slices)."""
    extent = volume_node.GetImageData().GetExtent()
    grid = shifted(world_ijk_to_ras(volume_node), np.array(extent[0::2], float))
    size = [extent[1] - extent[0] + 1, extent[3] - extent[2] + 1, extent[5] - extent[4] + 1]
    if labels.shape == tuple(size[::-1]) and np.allclose(ijk_to_ras, grid, atol=1e-4):
        return labels, ijk_to_ras
    moving = sitk.GetImageFromArray(np.ascontiguousarray(labels))
    origin, spacing, direction = lps_from_ijk_to_ras(ijk_to_ras)
    moving.SetOrigin(origin)
    moving.SetSpacing(spacing)
    moving.SetDirection(direction)
    resampled = sitk.Resample(moving, size, sitk.Transform(), sitk.sitkNearestNeighbor, *lps_from_ijk_to_ras(grid),
                              0, sitk.sitkUInt16)
    return sitk.GetArrayFromImage(resampled), grid


# --- worker side (no MRML) -----------------------------------------------------------------------------
def write_dicom_files(archive: Path, targets: dict[str, Path], overwrite: bool = False) -> dict[str, Path]:
    """The backend's zip file as ``targets``' two files, each written whole or not at all."""
    try:
        with zipfile.ZipFile(archive) as unpacked:
            contents = {name: unpacked.read(name) for name in (SEG_FILE, SR_FILE)}
    except (zipfile.BadZipFile, KeyError) as error:
        raise BackendError(f"the backend's answer is not the zip of {SEG_FILE} and {SR_FILE} ({error})") from None
    existing = [str(path) for path in targets.values() if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"would overwrite {', '.join(existing)}; choose another folder or allow overwriting")
    for path in targets.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_target(path) as temporary:
            temporary.write_bytes(contents[path.name])
    return dict(targets)
