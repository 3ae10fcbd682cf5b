"""The DICOM series behind a result's CT and PET, as the references the backend's DICOM export takes.

A volume loaded by Slicer's DICOM module carries its slices' SOP Instance UIDs in the
``DICOM.instanceUIDs`` attribute (slice order, as DICOMScalarVolumePlugin sets it), and Slicer's
DICOM database knows each instance's file. The database is passed in (in Slicer
``slicer.dicomDatabase``; anything with ``fileForInstance(uid) -> path or ""``), so this runs on
slicer-core with a stand-in. Looking files up touches the database (main thread); reading their
headers with pydicom (which Slicer ships) is plain file work for a worker thread. The JSON shape
is the backend's (``attumamba.io.dicom_references``): UIDs, grid, one position per slice; no pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pydicom
from pydicom.errors import InvalidDicomError

from .results import CT_ROLE, PET_ROLE

INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"
#: Patient and study attributes the SEG and SR copy (type 2: sent empty when the files lack them).
STUDY_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
                  "AccessionNumber", "ReferringPhysicianName")
SERIES_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "SOPClassUID")


class DicomDatabase(Protocol):
    def fileForInstance(self, uid: str) -> str: ...


class NotFromDicom(ValueError):
    """The result's CT has no DICOM series in Slicer's database: no DICOM SEG can reference it."""


def instance_uids(volume_node) -> list[str]:
    """The node's slices' SOP Instance UIDs ([] when it was not loaded from DICOM)."""
    return (volume_node.GetAttribute(INSTANCE_UIDS_ATTRIBUTE) or "").split() if volume_node is not None else []


def unavailable_reason(segmentation_node, database: DicomDatabase | None) -> str:
    """Why the result cannot be exported as DICOM ('' when it can); cheap enough for every button update."""
    if database is None:
        return "Slicer's DICOM database is not open: open the DICOM module once (it creates the database)."
    if segmentation_node is None:
        return "Segment first, or choose a lesion segmentation under Results."
    ct = segmentation_node.GetNodeReference(CT_ROLE)
    if ct is None:
        return f"{segmentation_node.GetName()} has no CT volume; a DICOM SEG references the CT's slices."
    if not instance_uids(ct):
        return (f"The CT '{ct.GetName()}' was not loaded from Slicer's DICOM database, so a DICOM SEG has no CT "
                "series to reference: load the study with the DICOM module and segment it, or use Export "
                "(NIfTI, .seg.nrrd, CSV, JSON).")
    return ""


def source_files(segmentation_node, database: DicomDatabase | None) -> dict[str, list[str]]:
    """{"ct": files, "pet": files} of the result's volumes in slice order; "pet" only when it came from DICOM.

    :class:`NotFromDicom` when the CT did not; ValueError when the database lost some of its files.
    """
    reason = unavailable_reason(segmentation_node, database)
    if reason:
        raise NotFromDicom(reason)
    sources = {"ct": _files(segmentation_node.GetNodeReference(CT_ROLE), database)}
    pet = segmentation_node.GetNodeReference(PET_ROLE)
    if instance_uids(pet):
        sources["pet"] = _files(pet, database)
    return sources


def _files(volume_node, database: DicomDatabase) -> list[str]:
    uids = instance_uids(volume_node)
    files = [database.fileForInstance(uid) or "" for uid in uids]
    missing = [uid for uid, path in zip(uids, files) if not path or not Path(path).is_file()]
    if missing:
        raise ValueError(f"{len(missing)} of the {len(uids)} DICOM files of '{volume_node.GetName()}' are no longer "
                         f"where Slicer's DICOM database says (first: instance {missing[0]}); import the series again")
    return files


def dicom_references(sources: dict[str, list[str]]) -> dict:
    """The backend's ``references`` JSON from the files (headers only; any thread)."""
    study = _header(sources["ct"][0], (*STUDY_KEYWORDS, "StudyInstanceUID"))
    references = {"StudyInstanceUID": _text(study, "StudyInstanceUID", sources["ct"][0]),
                  **{keyword: str(study.get(keyword, "") or "") for keyword in STUDY_KEYWORDS}}
    for which, files in sources.items():
        references[which] = series_reference(files)
    return references


def series_reference(files: list[str]) -> dict:
    """One series: its UIDs, grid and each slice's SOP Instance UID and position, in ``files``' order."""
    headers = [_header(path) for path in files]
    first, path = headers[0], files[0]
    if int(first.get("NumberOfFrames", 1) or 1) > 1:
        raise ValueError(f"{path} is a multi-frame image; export DICOM SEG from a series of single-slice images")
    reference = {keyword: _text(first, keyword, path) for keyword in SERIES_UIDS}
    reference.update(Rows=int(first.Rows), Columns=int(first.Columns),
                     PixelSpacing=_numbers(first, "PixelSpacing", path),
                     ImageOrientationPatient=_numbers(first, "ImageOrientationPatient", path),
                     instances=[{"SOPInstanceUID": _text(header, "SOPInstanceUID", name),
                                 "ImagePositionPatient": _numbers(header, "ImagePositionPatient", name)}
                                for header, name in zip(headers, files)])
    if first.get("SliceThickness") not in (None, ""):
        reference["SliceThickness"] = float(first.SliceThickness)  # mm, as the backend documents it
    return reference


def _header(path: str, tags=None) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(tags) if tags else None)
    except (OSError, InvalidDicomError) as error:
        raise ValueError(f"cannot read the DICOM header of {path}: {error}") from None


def _text(header, keyword: str, path: str) -> str:
    value = header.get(keyword)
    if value in (None, ""):
        raise ValueError(f"{path} has no {keyword}; a DICOM SEG cannot reference it")
    return str(value)


def _numbers(header, keyword: str, path: str) -> list[float]:
    value = header.get(keyword)
    if value in (None, ""):
        raise ValueError(f"{path} has no {keyword}; a DICOM SEG cannot reference it")
    return [float(v) for v in value]
