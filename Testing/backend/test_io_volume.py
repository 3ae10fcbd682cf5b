"""load_volume and the DICOM writers: geometry, values, PET SUV, and clear refusals."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from attumamba.errors import CancelledError, InputError
from attumamba.io import (
    check_same_space,
    load_volume,
    resample_to,
    write_ct_series,
    write_pet_series,
)

FACTOR_3600 = 2.960750e-4  # 75 kg, 370 MBq F-18, 60 min (see test_io_suv.py)
GEOMETRY_TOL_MM = 1e-4


def assert_same_geometry(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=GEOMETRY_TOL_MM)
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=GEOMETRY_TOL_MM)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)


@pytest.fixture
def oblique_ct(tiny_volume):
    rng = np.random.default_rng(1)
    return tiny_volume(rng.integers(-1024, 2000, (5, 9, 11)).astype(np.int16), spacing=(0.8, 1.3, 2.5))


def test_ct_round_trip_dicom_then_nifti_nrrd_mha(tmp_path, oblique_ct, study_info):
    files = write_ct_series(oblique_ct, tmp_path / "ct", study_info)
    assert len(files) == 5
    from_dicom = load_volume(tmp_path / "ct")
    assert_same_geometry(from_dicom, oblique_ct)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(from_dicom), sitk.GetArrayFromImage(oblique_ct))
    assert from_dicom.GetMetaData("attumamba.modality") == "CT"
    assert from_dicom.GetMetaData("attumamba.units") == "HU"
    assert from_dicom.GetMetaData("attumamba.study_uid") == study_info.study_uid
    assert from_dicom.GetMetaData("attumamba.frame_of_reference_uid") == study_info.frame_of_reference_uid
    for name in ("ct.nii.gz", "ct.nrrd", "ct.mha"):
        sitk.WriteImage(from_dicom, str(tmp_path / name))
        again = load_volume(tmp_path / name)
        assert_same_geometry(again, oblique_ct)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(again), sitk.GetArrayFromImage(oblique_ct))
        assert again.GetMetaData("attumamba.units") == "unknown"


def test_ct_headers_are_what_scanners_write(tmp_path, oblique_ct, study_info):
    files = write_ct_series(oblique_ct, tmp_path / "ct", study_info, series_number=7)
    ds = pydicom.dcmread(files[2])
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPClassUID == pydicom.uid.CTImageStorage
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert (ds.RescaleIntercept, ds.RescaleSlope, ds.SeriesNumber) == (-1024, 1, 7)
    assert ds.pixel_array.dtype == np.int16
    expected = oblique_ct.TransformIndexToPhysicalPoint((0, 0, 2))
    np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], expected, atol=1e-6)
    # PixelSpacing is row spacing (y) then column spacing (x).
    assert [float(v) for v in ds.PixelSpacing] == [1.3, 0.8]
    assert float(ds.SliceThickness) == 2.5
    uids = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    assert len(uids) == 5


def test_left_handed_volume_keeps_every_voxel_in_place(tmp_path, study_info):
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    image = sitk.GetImageFromArray(array)
    image.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, -1))  # z runs head to feet: det = −1
    image.SetOrigin((10.0, -5.0, 40.0))
    image.SetSpacing((1.0, 2.0, 3.0))
    write_ct_series(image, tmp_path / "ct", study_info)
    loaded = load_volume(tmp_path / "ct")
    assert np.linalg.det(np.reshape(loaded.GetDirection(), (3, 3))) == pytest.approx(1.0)
    back = resample_to(loaded, image, kind="label")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), array)


def test_pet_round_trip_gives_suv_back(tmp_path, tiny_volume, study_info, fdg_dose):
    rng = np.random.default_rng(2)
    suv = rng.uniform(0.0, 25.0, (4, 8, 8)).astype(np.float32)
    suv[1] *= 0.01  # a nearly empty slice gets its own fine slope
    suv[2] = 0.0
    image = tiny_volume(suv)
    files = write_pet_series(image, tmp_path / "pet", study_info, fdg_dose)
    slopes = [float(pydicom.dcmread(f, stop_before_pixels=True).RescaleSlope) for f in files]
    assert len(set(slopes)) == 4  # one slope per slice, chosen from its maximum
    loaded = load_volume(tmp_path / "pet")
    assert_same_geometry(loaded, image)
    back = sitk.GetArrayFromImage(loaded)
    for k in range(4):
        peak = max(float(np.abs(suv[k]).max()), 1e-12)
        assert np.abs(back[k] - suv[k]).max() < 1e-3 * peak
    assert loaded.GetPixelID() == sitk.sitkFloat32
    assert loaded.GetMetaData("attumamba.units") == "SUVbw"
    assert loaded.GetMetaData("attumamba.modality") == "PT"
    assert float(loaded.GetMetaData("attumamba.suv_factor")) == pytest.approx(FACTOR_3600, rel=1e-5)
    raw = sitk.GetArrayFromImage(load_volume(tmp_path / "pet", pet_units="raw"))
    np.testing.assert_allclose(raw[0], suv[0] / FACTOR_3600, rtol=1e-3, atol=1e-3 * raw[0].max())


def test_pet_headers_carry_the_dose(tmp_path, tiny_volume, study_info, fdg_dose):
    files = write_pet_series(tiny_volume(np.ones((2, 4, 4), np.float32)), tmp_path / "pet",
                             study_info, fdg_dose)
    ds = pydicom.dcmread(files[0])
    assert ds.SOPClassUID == pydicom.uid.PositronEmissionTomographyImageStorage
    assert (ds.Units, ds.DecayCorrection) == ("BQML", "START")
    assert {"ATTN", "DECY"} <= set(ds.CorrectedImage)
    item = ds.RadiopharmaceuticalInformationSequence[0]
    assert float(item.RadionuclideTotalDose) == 370e6
    assert float(item.RadionuclideHalfLife) == 6586.2
    assert item.RadiopharmaceuticalStartDateTime.startswith("20240305090000")
    assert item.RadionuclideCodeSequence[0].CodeValue == "77004003"
    assert float(ds.PatientWeight) == 75.0
    # SUV 1 → Bq/mL = 1 / factor = 3377.52; stored × slope must give it back.
    assert float(ds.pixel_array.max()) * float(ds.RescaleSlope) == pytest.approx(1 / FACTOR_3600, rel=1e-4)


def test_per_slice_slopes_survive_an_integer_first_slope(tmp_path, tiny_volume, study_info, fdg_dose):
    """SimpleITK would take int16 from a first slice with slope 1 and truncate the others."""
    suv = np.full((3, 4, 4), 2.345, dtype=np.float32)
    files = write_pet_series(tiny_volume(suv), tmp_path / "pet", study_info, fdg_dose)
    first = pydicom.dcmread(files[0])
    first.RescaleSlope = "1"
    first.PixelData = np.full((4, 4), 7, dtype="<i2").tobytes()
    first.save_as(files[0])
    back = sitk.GetArrayFromImage(load_volume(tmp_path / "pet"))
    np.testing.assert_allclose(back[0], 7 * FACTOR_3600, rtol=1e-5)
    np.testing.assert_allclose(back[1:], 2.345, rtol=1e-4)


def test_single_dicom_file_loads_its_series(tmp_path, write_dicom_pair):
    ct_dir, _ = write_dicom_pair(tmp_path)
    whole = load_volume(ct_dir)
    via_file = load_volume(sorted(ct_dir.iterdir())[3])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(whole), sitk.GetArrayFromImage(via_file))


def test_folder_with_two_series_lists_them_and_accepts_a_series_uid(tmp_path, write_dicom_pair):
    ct_dir, pet_dir = write_dicom_pair(tmp_path)
    mixed = tmp_path / "mixed"
    shutil.copytree(ct_dir, mixed)
    for path in pet_dir.iterdir():
        shutil.copy(path, mixed / path.name)
    with pytest.raises(InputError) as caught:
        load_volume(mixed)
    message = str(caught.value)
    ct_uid = load_volume(ct_dir).GetMetaData("attumamba.series_uid")
    pet_uid = load_volume(pet_dir).GetMetaData("attumamba.series_uid")
    assert "2 image series" in message and ct_uid in message and pet_uid in message
    assert "CT 'Synthetic CT' (6 files)" in message and "PT" in message and "series_uid" in message
    assert load_volume(mixed, series_uid=pet_uid).GetMetaData("attumamba.units") == "SUVbw"
    with pytest.raises(InputError, match="No series with SeriesInstanceUID 1.2.3"):
        load_volume(mixed, series_uid="1.2.3")


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_volume(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="is empty"):
        load_volume(tmp_path / "empty")
    (tmp_path / "study" / "ct").mkdir(parents=True)
    with pytest.raises(InputError, match=r"holds no files, only folders \(ct\)"):
        load_volume(tmp_path / "study")


def test_folder_without_dicom_files(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(InputError, match=r"No DICOM image files .*notes.txt: not a DICOM file"):
        load_volume(tmp_path)


def test_folder_with_one_slice_is_refused(tmp_path, write_dicom_pair):
    ct_dir, _ = write_dicom_pair(tmp_path)
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(sorted(ct_dir.iterdir())[0], lone)
    with pytest.raises(InputError, match="a single slice, not a 3D volume"):
        load_volume(lone)


def test_truncated_slice_is_named(tmp_path, write_dicom_pair):
    ct_dir, _ = write_dicom_pair(tmp_path)
    middle = sorted(ct_dir.iterdir())[2]
    middle.write_bytes(middle.read_bytes()[:-100])
    with pytest.raises(InputError) as caught:
        load_volume(ct_dir)
    message = str(caught.value)
    assert "uneven slice spacing" in message
    assert f"{middle.name}: truncated DICOM file" in message


def test_corrupted_and_wrong_files_are_refused(tmp_path, tiny_volume):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b this is not a gzip stream")
    with pytest.raises(InputError, match="Cannot read .*broken.nii.gz"):
        load_volume(broken)
    text = tmp_path / "scan.dat"
    text.write_text("hello")
    with pytest.raises(InputError, match="not a DICOM file"):
        load_volume(text)
    flat = tmp_path / "flat.nrrd"
    sitk.WriteImage(sitk.Image(4, 4, sitk.sitkFloat32), str(flat))
    with pytest.raises(InputError, match="2D image"):
        load_volume(flat)


def test_mismatched_frames_of_reference_are_refused(tmp_path, write_dicom_pair, study_info):
    ct_dir, _ = write_dicom_pair(tmp_path / "a")
    other = type(study_info)(**{**study_info.__dict__, "frame_of_reference_uid": "1.2.3.999"})
    _, pet_dir = write_dicom_pair(tmp_path / "b", study=other)
    ct, pet = load_volume(ct_dir), load_volume(pet_dir)
    with pytest.raises(InputError, match="different FrameOfReferenceUIDs .*1.2.3.999"):
        check_same_space(ct, pet)


def test_progress_and_cancel(tmp_path, write_dicom_pair):
    _, pet_dir = write_dicom_pair(tmp_path)
    seen: list[tuple[float, str]] = []
    load_volume(pet_dir, progress=lambda f, stage: seen.append((f, stage)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(seen) >= 3
    with pytest.raises(CancelledError):
        load_volume(pet_dir, cancel=lambda: True)
