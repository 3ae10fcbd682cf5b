"""Write CT and PET volumes as DICOM series that scanners and viewers accept.

The synthetic generator writes its phantoms through this module, so the DICOM path of the
whole tool (discovery, series reading, SUV) is exercised on data whose truth is known.
The PET series is written in Bq/mL with the exact inverse of :mod:`.suv`'s SUVbw, so
reading it back gives the SUV that went in, within int16 quantisation (one step is
1/32767 of the slice's maximum, because each slice gets its own RescaleSlope as on GE
scanners).

One file per slice, Explicit VR Little Endian, with valid file meta. A single dataset is
built per series and only the per-slice elements change between files, so a 400-slice CT
writes in a few seconds.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    PositronEmissionTomographyImageStorage,
    generate_uid,
)

from ..errors import InputError
from .dicom_time import format_date, format_datetime, format_time
from .suv import decayed_dose, suvbw_factor

CT_RESCALE_INTERCEPT = -1024.0
INT16_MAX = 32767
MANUFACTURER = "AttUMambaSeg synthetic"

#: PET radionuclides (CID 4020): SNOMED CT code and meaning, by the names used in ``PetDose``.
RADIONUCLIDE_CODES = {
    "F-18": ("77004003", "^18^Fluorine"),
    "Ga-68": ("35337001", "^68^Gallium"),
    "C-11": ("40565003", "^11^Carbon"),
    "Cu-64": ("3932008", "^64^Copper"),
    "Zr-89": ("63360001", "^89^Zirconium"),
}


@dataclass
class DicomStudyInfo:
    """Patient and study attributes shared by the CT and PET series of one study."""

    patient_id: str
    patient_name: str
    patient_sex: str  # "M" / "F"
    patient_age_years: int
    patient_weight_kg: float
    patient_size_m: float
    study_uid: str
    frame_of_reference_uid: str
    study_datetime: _dt.datetime
    study_description: str = "Synthetic whole-body PET/CT"


@dataclass
class PetDose:
    """The injection: what SUVbw needs besides the patient's weight."""

    radiopharmaceutical: str  # e.g. "Fluorodeoxyglucose" / "PSMA-11"
    radionuclide: str  # "F-18" / "Ga-68"
    half_life_s: float  # 6586.2 / 4062.6
    injected_dose_bq: float
    injection_datetime: _dt.datetime
    series_datetime: _dt.datetime  # scan start (DecayCorrection START reference)


def write_ct_series(
    ct_hu: sitk.Image, folder: Path, study: DicomStudyInfo, *, series_number: int = 2
) -> list[Path]:
    """Write a CT volume in HU as one file per slice (int16, intercept −1024); return the files."""
    volume, image = _volume_array(ct_hu, "CT")
    stored = np.clip(np.rint(volume - CT_RESCALE_INTERCEPT), -32768, INT16_MAX).astype("<i2")
    ds = _series_dataset(image, study, "CT", CTImageStorage, series_number, study.study_datetime)
    ds.SeriesDescription = "Synthetic CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.KVP = "120"
    ds.RescaleIntercept = _ds_text(CT_RESCALE_INTERCEPT)
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    return _write_slices(ds, image, stored, Path(folder), "ct", slopes=None)


def write_pet_series(
    suv: sitk.Image,
    folder: Path,
    study: DicomStudyInfo,
    dose: PetDose,
    *,
    series_number: int = 3,
) -> list[Path]:
    """Write a PET volume given in SUVbw as a Bq/mL series (per-slice slopes); return the files."""
    volume, image = _volume_array(suv, "PET")
    if not np.all(np.isfinite(volume)):
        raise InputError("PET SUV volume contains NaN or infinite values: it cannot be written.")
    weight_kg = float(_ds_text(study.patient_weight_kg))
    total_dose = float(_ds_text(dose.injected_dose_bq))
    half_life = float(_ds_text(dose.half_life_s))
    elapsed = (dose.series_datetime - dose.injection_datetime).total_seconds()
    if weight_kg <= 0 or total_dose <= 0 or half_life <= 0:
        raise InputError("PET weight, injected dose and half-life must all be positive.")
    if elapsed < 0:
        raise InputError("PET series_datetime is before injection_datetime: the decay time is negative.")
    factor = suvbw_factor(weight_kg, decayed_dose(total_dose, half_life, elapsed))
    bqml = volume / factor
    peaks = np.abs(bqml).reshape(bqml.shape[0], -1).max(axis=1)
    slopes = [float(_ds_text(p / INT16_MAX)) if p > 0 else 1.0 for p in peaks]
    stored = np.empty(bqml.shape, dtype="<i2")
    for k, slope in enumerate(slopes):
        stored[k] = np.clip(np.rint(bqml[k] / slope), -INT16_MAX, INT16_MAX)

    ds = _series_dataset(
        image, study, "PT", PositronEmissionTomographyImageStorage, series_number,
        dose.series_datetime,
    )
    ds.SeriesDescription = f"Synthetic PET AC ({dose.radiopharmaceutical})"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SeriesType = ["WHOLE BODY", "IMAGE"]
    ds.Units = "BQML"
    ds.CountsSource = "EMISSION"
    ds.DecayCorrection = "START"
    ds.CorrectedImage = ["ATTN", "DECY", "SCAT", "RAN", "DTIM", "NORM"]
    ds.AttenuationCorrectionMethod = "CT-based"
    ds.ReconstructionMethod = "Synthetic"
    ds.NumberOfSlices = image.GetSize()[2]
    ds.RescaleIntercept = "0"
    ds.RadiopharmaceuticalInformationSequence = Sequence([_radiopharmaceutical_item(dose)])
    return _write_slices(ds, image, stored, Path(folder), "pt", slopes=slopes)


def _volume_array(image: sitk.Image, what: str) -> tuple[np.ndarray, sitk.Image]:
    """The voxels as float64 (z, y, x) on a right-handed grid, after checking the image."""
    if not isinstance(image, sitk.Image):
        raise InputError(f"{what} must be a SimpleITK image, not {type(image).__name__}.")
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{what} must be a 3D scalar image to be written as a DICOM series.")
    direction = np.array(image.GetDirection()).reshape(3, 3)
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-6):
        raise InputError(f"{what} has a non-orthonormal direction matrix: DICOM cannot store it.")
    volume = sitk.GetArrayFromImage(image).astype(np.float64)
    if np.linalg.det(direction) < 0:
        # DICOM slices stack along row × column; flip z so the same voxels sit at the same
        # physical points on a right-handed grid.
        flipped = sitk.GetImageFromArray(volume[::-1].copy())
        flipped.SetSpacing(image.GetSpacing())
        flipped.SetOrigin(image.TransformIndexToPhysicalPoint((0, 0, image.GetSize()[2] - 1)))
        direction[:, 2] *= -1
        flipped.SetDirection(tuple(direction.ravel()))
        return volume[::-1], flipped
    return volume, image


def _series_dataset(
    image: sitk.Image,
    study: DicomStudyInfo,
    modality: str,
    sop_class: str,
    series_number: int,
    series_time: _dt.datetime,
) -> Dataset:
    """Everything but the per-slice elements, for one series."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.Modality = modality
    ds.Manufacturer = MANUFACTURER
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = study.patient_sex
    ds.PatientAge = f"{int(study.patient_age_years):03d}Y"
    ds.PatientWeight = _ds_text(study.patient_weight_kg)
    ds.PatientSize = _ds_text(study.patient_size_m)
    ds.StudyInstanceUID = study.study_uid
    ds.StudyDate = format_date(study.study_datetime)
    ds.StudyTime = format_time(study.study_datetime)
    ds.StudyDescription = study.study_description
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[study.study_uid, modality, str(series_number)])
    ds.SeriesNumber = series_number
    ds.SeriesDate = format_date(series_time)
    ds.SeriesTime = format_time(series_time)
    ds.AcquisitionDate = ds.SeriesDate
    ds.AcquisitionTime = ds.SeriesTime
    ds.ContentDate = ds.SeriesDate
    ds.ContentTime = ds.SeriesTime
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "FFS"
    direction = np.array(image.GetDirection()).reshape(3, 3)
    ds.ImageOrientationPatient = [_ds_text(v) for v in (*direction[:, 0], *direction[:, 1])]
    spacing = image.GetSpacing()
    ds.PixelSpacing = [_ds_text(spacing[1]), _ds_text(spacing[0])]
    ds.SliceThickness = _ds_text(spacing[2])
    ds.SpacingBetweenSlices = _ds_text(spacing[2])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = image.GetSize()[1]
    ds.Columns = image.GetSize()[0]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    return ds


def _radiopharmaceutical_item(dose: PetDose) -> Dataset:
    if dose.radionuclide not in RADIONUCLIDE_CODES:
        known = ", ".join(RADIONUCLIDE_CODES)
        raise InputError(f"Unknown radionuclide {dose.radionuclide!r}: use one of {known}.")
    code, meaning = RADIONUCLIDE_CODES[dose.radionuclide]
    nuclide = Dataset()
    nuclide.CodeValue = code
    nuclide.CodingSchemeDesignator = "SCT"
    nuclide.CodeMeaning = meaning
    item = Dataset()
    item.Radiopharmaceutical = dose.radiopharmaceutical
    item.RadiopharmaceuticalStartTime = format_time(dose.injection_datetime)
    item.RadiopharmaceuticalStartDateTime = format_datetime(dose.injection_datetime)
    item.RadionuclideTotalDose = _ds_text(dose.injected_dose_bq)
    item.RadionuclideHalfLife = _ds_text(dose.half_life_s)
    item.RadionuclideCodeSequence = Sequence([nuclide])
    return item


def _write_slices(
    ds: Dataset,
    image: sitk.Image,
    stored: np.ndarray,
    folder: Path,
    prefix: str,
    slopes: list[float] | None,
) -> list[Path]:
    """One file per slice; the dataset is reused and only per-slice elements change."""
    n_slices = stored.shape[0]
    paths = [folder / f"{prefix}_{k + 1:05d}.dcm" for k in range(n_slices)]
    existing = [p for p in paths if p.exists()]
    if existing:
        raise InputError(
            f"{existing[0]} already exists: refusing to overwrite DICOM files. "
            "Write the series into an empty folder."
        )
    folder.mkdir(parents=True, exist_ok=True)
    origin = np.array(image.GetOrigin())
    step = np.array(image.GetDirection()).reshape(3, 3)[:, 2] * image.GetSpacing()[2]
    series_uid = ds.SeriesInstanceUID
    for k, path in enumerate(paths):
        position = origin + k * step
        sop_uid = generate_uid(entropy_srcs=[series_uid, str(k)])
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_ds_text(v) for v in position]
        ds.SliceLocation = _ds_text(position[2])
        if slopes is not None:
            ds.RescaleSlope = _ds_text(slopes[k])
            ds.ImageIndex = k + 1
        ds.PixelData = stored[k].tobytes()
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return paths


def _ds_text(value: float) -> str:
    """A decimal string (DS) of at most 16 characters; callers reuse the parsed value."""
    text = f"{float(value):.10g}"
    if len(text) > 16:
        text = f"{float(value):.9g}"
    return text
