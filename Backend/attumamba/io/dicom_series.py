"""Read one DICOM series folder as a 3D volume (CT in HU, PET in SUVbw).

GDCM (through SimpleITK) sorts the slices and computes the geometry; pydicom reads the
headers for SUV. SimpleITK picks its pixel type from the first slice, so a series whose
later slices have other (non-integer) RescaleSlopes would be truncated: such series,
and every PET, are read as float32 so each slice's own slope and intercept are applied.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset

from ..errors import InputError
from ._callbacks import CancelCallback, ProgressCallback, check_cancelled, report
from .dicom_headers import VOLUME_MODALITIES, DicomSeries, files_in_folder, group_series
from .patient import from_headers as patient_from_headers
from .patient import set_patient, set_tracer, tracer_from_headers
from .suv import compute_suv_factor

PetUnits = Literal["auto", "raw"]

#: Metadata keys set on every volume :func:`attumamba.io.load_volume` returns.
KEY_MODALITY = "attumamba.modality"
KEY_UNITS = "attumamba.units"
KEY_SUV_FACTOR = "attumamba.suv_factor"
KEY_SUV_NOTES = "attumamba.suv_notes"
KEY_STUDY_UID = "attumamba.study_uid"
KEY_FRAME_OF_REFERENCE_UID = "attumamba.frame_of_reference_uid"
KEY_SERIES_UID = "attumamba.series_uid"
KEY_SERIES_DESCRIPTION = "attumamba.series_description"
KEY_SOURCE = "attumamba.source"

#: Relative deviation of one slice gap from the median gap that counts as a missing slice.
SLICE_GAP_TOLERANCE = 0.1


def read_dicom_series(
    folder: Path,
    *,
    series_uid: str | None = None,
    pet_units: PetUnits = "auto",
    progress: ProgressCallback = None,
    cancel: CancelCallback = None,
) -> sitk.Image:
    """The volume of the (only, or named) image series directly inside ``folder``."""
    files = files_in_folder(folder)
    if not files:
        subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if subfolders:
            raise InputError(
                f"{folder} holds no files, only folders ({', '.join(subfolders[:5])}): pass the "
                "folder of one DICOM series, or use the batch command for a tree of studies."
            )
        raise InputError(f"{folder} is empty: pass a folder holding the files of one DICOM series.")
    series, rejected = group_series(
        files, total=len(files), progress=_scaled(progress, 0.0, 0.4), cancel=cancel
    )
    chosen = _pick_series(folder, series, rejected, series_uid)
    check_cancelled(cancel, "Reading the DICOM series")
    report(progress, 0.4, "reading DICOM pixel data")
    ordered = _gdcm_order(folder, chosen)
    try:
        _check_slice_positions(chosen, ordered)
    except InputError as exc:
        if not rejected:
            raise
        unreadable = "; ".join(f"{path.name}: {reason}" for path, reason in rejected[:3])
        raise InputError(f"{exc} Unreadable files in the folder: {unreadable}.") from None
    image = _read_pixels(chosen, ordered)
    check_cancelled(cancel, "Reading the DICOM series")
    report(progress, 0.9, "converting units")
    image = _to_units(image, chosen, ordered, pet_units)
    _set_series_metadata(image, chosen, folder)
    report(progress, 1.0, "done")
    return image


def _pick_series(
    folder: Path,
    series: list[DicomSeries],
    rejected: list[tuple[Path, str]],
    series_uid: str | None,
) -> DicomSeries:
    if not series:
        examples = "; ".join(f"{path.name}: {reason}" for path, reason in rejected[:3])
        raise InputError(
            f"No DICOM image files in {folder} ({len(rejected)} files looked at; {examples}). "
            "Pass a folder that holds the files of one DICOM series."
        )
    listing = "\n  ".join(s.summary() for s in series)
    if series_uid is not None:
        for candidate in series:
            if candidate.series_uid == series_uid:
                return _checked_volume_series(folder, candidate)
        raise InputError(
            f"No series with SeriesInstanceUID {series_uid} in {folder}. It holds:\n  {listing}"
        )
    images = [s for s in series if s.modality in VOLUME_MODALITIES]
    if len(images) == 1:
        return _checked_volume_series(folder, images[0])
    if not images:
        raise InputError(
            f"{folder} holds no CT or PET series, only:\n  {listing}\n"
            "Pass a folder with a CT or PET (PT) series."
        )
    raise InputError(
        f"{folder} holds {len(images)} image series:\n  {listing}\n"
        "Pass a folder with only one series, or choose one by its SeriesInstanceUID "
        "(series_uid=...)."
    )


def _checked_volume_series(folder: Path, series: DicomSeries) -> DicomSeries:
    if series.modality not in VOLUME_MODALITIES:
        raise InputError(
            f"Series {series.summary()} in {folder} has modality {series.modality or '(none)'}: "
            "only CT and PET (PT) image series can be read as volumes."
        )
    if len(series.files) < 2:
        frames = int(series.headers[0].get("NumberOfFrames", 1) or 1)
        detail = (
            "an enhanced (multi-frame) DICOM file, which is not supported"
            if frames > 1
            else "a single slice, not a 3D volume"
        )
        raise InputError(
            f"Series {series.summary()} in {folder} is {detail}. Copy all slices of the series "
            "(one file per slice) into the folder."
        )
    if any("ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds
           for ds in series.headers):
        raise InputError(
            f"Series {series.summary()} lacks ImagePositionPatient/ImageOrientationPatient "
            "(0020,0032)/(0020,0037): its slices cannot be placed in space."
        )
    return series


def _gdcm_order(folder: Path, series: DicomSeries) -> list[Path]:
    """The series' files in GDCM's slice order (along the slice normal)."""
    names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series.series_uid)
    ordered = [Path(name) for name in names]
    if sorted(ordered) != sorted(series.files):
        # GDCM left some out (or saw others): fall back to sorting the slices ourselves.
        ordered = _sort_by_position(series)
    return ordered


def _sort_by_position(series: DicomSeries) -> list[Path]:
    normal = _slice_normal(series.headers[0])
    positions = [_position(ds) @ normal for ds in series.headers]
    return [path for _, path in sorted(zip(positions, series.files), key=lambda item: item[0])]


def _check_slice_positions(series: DicomSeries, ordered: list[Path]) -> None:
    """Refuse series with duplicate slices or gaps (missing files): geometry would be wrong."""
    by_path = dict(zip(series.files, series.headers))
    headers = [by_path[path] for path in ordered]
    normal = _slice_normal(headers[0])
    positions = np.array([_position(ds) @ normal for ds in headers])
    gaps = np.diff(positions)
    median = float(np.median(np.abs(gaps)))
    if median <= 0 or np.any(np.abs(gaps) < 1e-3 * max(median, 1.0)):
        raise InputError(
            f"Series {series.summary()} has several slices at the same position: it mixes "
            "acquisitions (e.g. two time points). Pass a folder holding one volume."
        )
    worst = float(np.max(np.abs(np.abs(gaps) - median)))
    if worst > SLICE_GAP_TOLERANCE * median:
        raise InputError(
            f"Series {series.summary()} has uneven slice spacing (median {median:.3f} mm, one "
            f"gap off by {worst:.3f} mm): slices are probably missing. Copy the complete series."
        )


def _read_pixels(series: DicomSeries, ordered: list[Path]) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(path) for path in ordered])
    if series.modality == "PT" or _rescale_varies(series.headers):
        reader.SetOutputPixelType(sitk.sitkFloat32)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"Cannot read the pixel data of series {series.summary()}: {exc}") from None
    return image


def _rescale_varies(headers: list[Dataset]) -> bool:
    pairs = {
        (float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0))
        for ds in headers
    }
    return len(pairs) > 1 or any(
        not slope.is_integer() or not intercept.is_integer() for slope, intercept in pairs
    )


def _to_units(
    image: sitk.Image, series: DicomSeries, ordered: list[Path], pet_units: PetUnits
) -> sitk.Image:
    """PET to SUVbw (per-slice factors); CT stays in HU."""
    if series.modality == "CT":
        image = _narrow_integer(image)
        image.SetMetaData(KEY_UNITS, "HU")
        return image
    by_path = dict(zip(series.files, series.headers))
    headers = [by_path[path] for path in ordered]
    if pet_units == "raw":
        image.SetMetaData(KEY_UNITS, str(headers[0].get("Units", "unknown") or "unknown"))
        return image
    suv = compute_suv_factor(headers)
    factors = np.asarray(suv.slice_factors, dtype=np.float64)
    if np.all(factors == factors[0]):
        converted = sitk.Cast(image * float(factors[0]), sitk.sitkFloat32)
    else:
        array = sitk.GetArrayFromImage(image).astype(np.float64) * factors[:, None, None]
        converted = sitk.GetImageFromArray(array.astype(np.float32))
        converted.CopyInformation(image)
    converted.SetMetaData(KEY_UNITS, "SUVbw")
    converted.SetMetaData(KEY_SUV_FACTOR, repr(float(suv.factor)))
    converted.SetMetaData(KEY_SUV_NOTES, "; ".join(suv.notes))
    set_patient(converted, *patient_from_headers(headers[0]))
    set_tracer(converted, tracer_from_headers(headers[0]))
    return converted


def _narrow_integer(image: sitk.Image) -> sitk.Image:
    """int16 when the HU fit (GDCM widens to int32 for the intercept): half the memory."""
    if image.GetPixelID() not in (sitk.sitkInt32, sitk.sitkUInt16, sitk.sitkUInt32):
        return image
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(image)
    if stats.GetMinimum() >= -32768 and stats.GetMaximum() <= 32767:
        return sitk.Cast(image, sitk.sitkInt16)
    return image


def _set_series_metadata(image: sitk.Image, series: DicomSeries, folder: Path) -> None:
    image.SetMetaData(KEY_MODALITY, series.modality)
    image.SetMetaData(KEY_SERIES_UID, series.series_uid)
    image.SetMetaData(KEY_STUDY_UID, series.study_uid or "")
    image.SetMetaData(KEY_FRAME_OF_REFERENCE_UID, series.frame_of_reference_uid or "")
    image.SetMetaData(KEY_SERIES_DESCRIPTION, series.description)
    image.SetMetaData(KEY_SOURCE, str(folder))


def _slice_normal(ds: Dataset) -> np.ndarray:
    orientation = np.array([float(v) for v in ds.ImageOrientationPatient])
    return np.cross(orientation[:3], orientation[3:])


def _position(ds: Dataset) -> np.ndarray:
    return np.array([float(v) for v in ds.ImagePositionPatient])


def _scaled(progress: ProgressCallback, start: float, end: float) -> ProgressCallback:
    if progress is None:
        return None
    return lambda fraction, stage: progress(start + (end - start) * fraction, stage)
