"""Shared fixtures for the backend tests (others append their own below)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

# --- attumamba.io: DICOM headers and tiny studies -------------------------------------------

F18_HALF_LIFE_S = 6586.2
GA68_HALF_LIFE_S = 4062.6


@pytest.fixture(scope="module")  # stateless: shareable
def study_info():
    """Patient/study attributes of a synthetic study (75 kg, 1.80 m)."""
    from attumamba.io import DicomStudyInfo

    return DicomStudyInfo(
        patient_id="TEST001",
        patient_name="Test^Patient",
        patient_sex="M",
        patient_age_years=61,
        patient_weight_kg=75.0,
        patient_size_m=1.80,
        study_uid="1.2.826.0.1.3680043.8.498.1001",
        frame_of_reference_uid="1.2.826.0.1.3680043.8.498.1002",
        study_datetime=dt.datetime(2024, 3, 5, 8, 50),
    )


@pytest.fixture(scope="module")  # stateless: shareable
def fdg_dose():
    """370 MBq F-18 FDG injected at 09:00, scan started at 10:00 (Δt = 3600 s)."""
    from attumamba.io import PetDose

    return PetDose(
        radiopharmaceutical="Fluorodeoxyglucose",
        radionuclide="F-18",
        half_life_s=F18_HALF_LIFE_S,
        injected_dose_bq=370e6,
        injection_datetime=dt.datetime(2024, 3, 5, 9, 0, 0),
        series_datetime=dt.datetime(2024, 3, 5, 10, 0, 0),
    )


@pytest.fixture
def make_pet_header() -> Callable[..., "object"]:
    """Factory for a PET slice header (pydicom Dataset) with the SUV-relevant tags.

    Defaults: BQML, DecayCorrection START, ATTN/DECY, 75 kg, 370 MBq F-18 injected
    2024-03-05 09:00:00 (StartDateTime), series 10:00:00, acquisition 10:00:00.
    Keyword ``None`` removes a tag; ``pixels`` (int16 array) adds pixel data.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian

    def make(
        *,
        units: str | None = "BQML",
        decay_correction: str | None = "START",
        corrected: list[str] | None = ("ATTN", "DECY"),
        weight: object = "75",
        dose: object = "370000000",
        half_life: object = str(F18_HALF_LIFE_S),
        start_datetime: str | None = "20240305090000",
        start_time: str | None = "090000",
        series_date: str | None = "20240305",
        series_time: str | None = "100000",
        acquisition_date: str | None = "20240305",
        acquisition_time: str | None = "100000",
        with_pharm: bool = True,
        slope: str = "1",
        intercept: str = "0",
        pixels: np.ndarray | None = None,
        **extra: object,
    ) -> Dataset:
        ds = Dataset()
        ds.Modality = "PT"
        values = {
            "Units": units, "DecayCorrection": decay_correction,
            "CorrectedImage": list(corrected) if corrected is not None else None,
            "PatientWeight": weight, "SeriesDate": series_date, "SeriesTime": series_time,
            "AcquisitionDate": acquisition_date, "AcquisitionTime": acquisition_time,
            "RescaleSlope": slope, "RescaleIntercept": intercept,
        }
        for keyword, value in {**values, **extra}.items():
            if value is not None:
                setattr(ds, keyword, value)
        if with_pharm:
            item = Dataset()
            for keyword, value in {
                "RadionuclideTotalDose": dose, "RadionuclideHalfLife": half_life,
                "RadiopharmaceuticalStartDateTime": start_datetime,
                "RadiopharmaceuticalStartTime": start_time,
            }.items():
                if value is not None:
                    setattr(item, keyword, value)
            ds.RadiopharmaceuticalInformationSequence = Sequence([item])
        if pixels is not None:
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.Rows, ds.Columns = pixels.shape
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated = ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1
            ds.PixelData = pixels.astype("<i2").tobytes()
        return ds

    return make


@pytest.fixture(scope="module")  # stateless: shareable
def tiny_volume() -> Callable[..., "object"]:
    """Factory for a small SimpleITK image with a non-trivial geometry."""
    import SimpleITK as sitk

    def make(
        array: np.ndarray,
        *,
        spacing=(4.0, 3.5, 2.5),
        origin=(-101.25, 20.5, -640.0),
        angle_rad: float = 0.3,
    ) -> sitk.Image:
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing)
        image.SetOrigin(origin)
        c, s = np.cos(angle_rad), np.sin(angle_rad)
        image.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
        return image

    return make


@pytest.fixture(scope="module")  # stateless: shareable
def write_dicom_pair(study_info, fdg_dose, tiny_volume) -> Callable[..., tuple[Path, Path]]:
    """Write a tiny CT (HU) + PET (SUV) DICOM pair into ``folder``; return (ct_dir, pet_dir)."""
    from attumamba.io import write_ct_series, write_pet_series

    def write(folder: Path, *, study=None, seed: int = 0, ct_slices: int = 6, pet_slices: int = 4):
        study = study or study_info
        rng = np.random.default_rng(seed)
        ct = tiny_volume(rng.integers(-1024, 1500, (ct_slices, 10, 12)).astype(np.int16),
                         spacing=(3.0, 3.0, 2.0))
        pet = tiny_volume(rng.uniform(0.0, 12.0, (pet_slices, 8, 8)).astype(np.float32))
        write_ct_series(ct, folder / "ct", study)
        write_pet_series(pet, folder / "pet", study, fdg_dose)
        return folder / "ct", folder / "pet"

    return write
