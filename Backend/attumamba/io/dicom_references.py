"""DICOM source-image references given as JSON, as header datasets the SEG and SR writers take.

The Slicer module exports a DICOM SEG and SR of an edited segmentation without sending the
CT's files: it sends, from Slicer's DICOM database, the few attributes the SEG and SR copy or
reference. highdicom reads those attributes only (no pixels), so a header-only pydicom
dataset per slice stands in for each file. The smallest set (DICOM keywords)::

    {"StudyInstanceUID": "...",                       # required
     "PatientName": "", "PatientID": "", "PatientBirthDate": "", "PatientSex": "",
     "StudyDate": "", "StudyTime": "", "StudyID": "", "AccessionNumber": "",
     "ReferringPhysicianName": "",                    # optional (type 2: empty when unknown)
     "ct": {"SeriesInstanceUID": "...", "FrameOfReferenceUID": "...",
            "Rows": 512, "Columns": 512, "PixelSpacing": [row mm, column mm],
            "ImageOrientationPatient": [6 numbers], "SliceThickness": mm (optional: the slice gap),
            "instances": [{"SOPInstanceUID": "...", "ImagePositionPatient": [x, y, z]}, ...]},
     "pet": {... the same, optional: the SR lists the PET images the SUVs come from}}

A series may also give its ``SOPClassUID`` (default: CT / PET Image Storage) and its own
``StudyInstanceUID``; ``SliceThickness`` may also come as a list of one number (as a DS value is
written in DICOM JSON), and when left out the slices' gap stands in. Anything missing or
malformed is an :class:`InputError` naming it.
"""

from __future__ import annotations

import math

import numpy as np

from pydicom.dataset import Dataset
from pydicom.uid import RE_VALID_UID, UID

from ..errors import InputError
from .dicom_headers import DicomSeries

PATIENT_STUDY_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                          "StudyID", "AccessionNumber", "ReferringPhysicianName")
SOP_CLASSES = {"ct": ("CT", "1.2.840.10008.5.1.4.1.1.2"), "pet": ("PT", "1.2.840.10008.5.1.4.1.1.128")}
MAX_INSTANCES = 20000


def series_from_references(references: object) -> tuple[DicomSeries, DicomSeries | None]:
    """The CT series (and the PET series, when given) as header-only datasets, checked."""
    if not isinstance(references, dict):
        raise InputError("references must be a JSON object with StudyInstanceUID, ct and optionally pet")
    common = Dataset()
    common.StudyInstanceUID = _uid(references, "StudyInstanceUID", "references")
    for keyword in PATIENT_STUDY_KEYWORDS:
        value = references.get(keyword, "")
        if not isinstance(value, str):
            raise InputError(f"references.{keyword} must be a string (empty when unknown), not {value!r}")
        setattr(common, keyword, value)
    if not isinstance(references.get("ct"), dict):
        raise InputError("references.ct is missing: give the CT series the labelmap lies on (its UIDs, grid and "
                         "one SOPInstanceUID and ImagePositionPatient per slice)")
    ct = _series(references["ct"], "ct", common)
    pet = _series(references["pet"], "pet", common) if references.get("pet") is not None else None
    return ct, pet


def _series(given: object, which: str, common: Dataset) -> DicomSeries:
    where = f"references.{which}"
    if not isinstance(given, dict):
        raise InputError(f"{where} must be a JSON object")
    modality, default_class = SOP_CLASSES[which]
    shared = Dataset()
    shared.update(common)
    if "StudyInstanceUID" in given:
        shared.StudyInstanceUID = _uid(given, "StudyInstanceUID", where)
    shared.SOPClassUID = _uid(given, "SOPClassUID", where) if "SOPClassUID" in given else UID(default_class)
    shared.Modality = modality
    shared.SeriesInstanceUID = _uid(given, "SeriesInstanceUID", where)
    shared.FrameOfReferenceUID = _uid(given, "FrameOfReferenceUID", where)
    shared.Rows, shared.Columns = (_count(given, key, where) for key in ("Rows", "Columns"))
    shared.PixelSpacing = _numbers(given, "PixelSpacing", 2, where, positive=True)
    shared.ImageOrientationPatient = _numbers(given, "ImageOrientationPatient", 6, where)
    instances = given.get("instances")
    if not isinstance(instances, list) or not instances:
        raise InputError(f"{where}.instances must list every slice as {{SOPInstanceUID, ImagePositionPatient}}")
    if len(instances) > MAX_INSTANCES:
        raise InputError(f"{where}.instances lists {len(instances)} slices; at most {MAX_INSTANCES} are accepted")
    headers, seen = [], set()
    for n, instance in enumerate(instances):
        place = f"{where}.instances[{n}]"
        if not isinstance(instance, dict):
            raise InputError(f"{place} must be a JSON object")
        header = Dataset()
        header.update(shared)
        header.SOPInstanceUID = _uid(instance, "SOPInstanceUID", place)
        if header.SOPInstanceUID in seen:
            raise InputError(f"{place}: SOPInstanceUID {header.SOPInstanceUID} is listed twice")
        seen.add(header.SOPInstanceUID)
        header.ImagePositionPatient = _numbers(instance, "ImagePositionPatient", 3, place)
        header.InstanceNumber = n + 1
        headers.append(header)
    thickness = _slice_thickness(given, where) if "SliceThickness" in given else _slice_gap(headers, where)
    for header in headers:
        header.SliceThickness = thickness
    return DicomSeries(series_uid=str(shared.SeriesInstanceUID), modality=modality, description="",
                       study_uid=str(shared.StudyInstanceUID), frame_of_reference_uid=str(shared.FrameOfReferenceUID),
                       headers=headers)


def _slice_thickness(given: dict, where: str) -> float:
    """The given SliceThickness: a positive number of mm, or a list of one (as pydicom's JSON writes a DS)."""
    value = given["SliceThickness"]
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InputError(f"{where}.SliceThickness must be a positive number of mm (or a list of one), not "
                         f"{given['SliceThickness']!r}; leave it out to use the gap between slices")
    return float(value)


def _slice_gap(headers: list[Dataset], where: str) -> float:
    """The median distance between neighbouring slices along the slice normal (SliceThickness's stand-in)."""
    orientation = np.array(headers[0].ImageOrientationPatient, float)
    normal = np.cross(orientation[:3], orientation[3:])
    depths = np.sort([float(np.dot(normal, np.array(h.ImagePositionPatient, float))) for h in headers])
    gaps = np.diff(depths)
    if not gaps.size or np.median(gaps) <= 0:
        raise InputError(f"{where}.SliceThickness is missing and cannot be told from one slice position: give it")
    return float(np.median(gaps))


def _uid(given: dict, key: str, where: str) -> UID:
    value = given.get(key)
    if not isinstance(value, str) or not value:
        raise InputError(f"{where}.{key} is missing: give the UID from the DICOM files' header")
    if len(value) > 64 or not RE_VALID_UID.fullmatch(value):
        raise InputError(f"{where}.{key} {value!r} is not a valid DICOM UID (digits and dots, at most 64 characters)")
    return UID(value)


def _count(given: dict, key: str, where: str) -> int:
    value = given.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 65535:
        raise InputError(f"{where}.{key} must be a whole number of pixels from 1 to 65535, not {value!r}")
    return value


def _numbers(given: dict, key: str, count: int, where: str, *, positive: bool = False) -> list[float]:
    value = given.get(key)
    if (not isinstance(value, list) or len(value) != count
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
            or positive and not all(v > 0 for v in value)):
        kind = "positive numbers" if positive else "numbers"
        raise InputError(f"{where}.{key} must be a list of {count} {kind}, not {value!r}")
    return [float(v) for v in value]
