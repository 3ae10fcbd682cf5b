"""SUL beside SUV in the lesion report (issue 18, item 2)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from attumamba.io import load_volume
from attumamba.lesions import analyze
from attumamba.lesions.report import csv_rows


def lesion_on(pet: sitk.Image) -> sitk.Image:
    labels = np.zeros(sitk.GetArrayViewFromImage(pet).shape, np.uint8)
    labels[1:3, 2:5, 2:5] = 1
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(pet)
    return image


def test_a_dicom_pet_gives_sul_from_its_patient_headers(tmp_path, write_dicom_pair):
    _, pet_dir = write_dicom_pair(tmp_path)
    pet = load_volume(pet_dir)
    report = analyze(lesion_on(pet), pet_suv=pet)
    # male, 1.80 m, 75 kg: BMI 23.15; LBM = 9270·75 / (6680 + 216·23.15) = 59.65 kg
    factor = 9270 * 75 / (6680 + 216 * 75 / 1.8 ** 2) / 75
    assert report["sul"]["available"] and report["sul"]["factor"] == pytest.approx(factor)
    lesion = report["lesions"][0]
    for what in ("max", "mean", "peak"):
        assert lesion[f"sul_{what}"] == pytest.approx(lesion[f"suv_{what}"] * factor)
    assert csv_rows(report)[0]["sul_peak"] == pytest.approx(lesion["sul_peak"])


def test_a_volume_file_without_patient_data_gets_suv_only_and_says_why(tmp_path, write_dicom_pair):
    _, pet_dir = write_dicom_pair(tmp_path)
    path = tmp_path / "pet.nii.gz"
    sitk.WriteImage(load_volume(pet_dir), str(path))
    pet = load_volume(path)
    report = analyze(lesion_on(pet), pet_suv=pet)
    assert not report["sul"]["available"] and "PatientSex" in report["sul"]["reason"]
    assert report["lesions"][0]["sul_max"] is None and report["lesions"][0]["suv_max"] is not None
    given = analyze(lesion_on(pet), pet_suv=pet, patient=("F", 1.65, 60.0))
    assert given["sul"]["available"] and given["lesions"][0]["sul_max"] < given["lesions"][0]["suv_max"]


def test_a_dicom_pet_names_its_tracer(tmp_path, write_dicom_pair):
    """The radiopharmaceutical travels with the SUV volume (Deauville is scored for FDG only)."""
    from attumamba.io.patient import tracer_of

    _, pet_dir = write_dicom_pair(tmp_path)
    import pydicom

    header = pydicom.dcmread(next(pet_dir.iterdir()), stop_before_pixels=True)
    named = header.RadiopharmaceuticalInformationSequence[0].Radiopharmaceutical
    assert named and tracer_of(load_volume(pet_dir)) == named
