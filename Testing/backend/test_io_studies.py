"""find_studies on a mixed tree: the right pairs, and every skipped item with its reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from attumamba.errors import CancelledError, InputError
from attumamba.io import find_studies, write_ct_series


def small_volume(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.Image(3, 3, 2, sitk.sitkFloat32), str(path))


def seg_file(path: Path, study_uid: str) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "SEG"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def another(study_info, **changes):
    return type(study_info)(**{**study_info.__dict__, **changes})


@pytest.fixture
def mixed_tree(tmp_path, study_info, write_dicom_pair, tiny_volume):
    root = tmp_path / "data"
    # Two complete DICOM studies; the second keeps CT and PET in one folder, plus a localizer.
    write_dicom_pair(root / "study_a")
    study_b = another(study_info, patient_id="P2", study_uid="1.2.3.20", frame_of_reference_uid="1.2.3.21")
    ct_b, pet_b = write_dicom_pair(root / "study_b" / "tmp", study=study_b)
    together = root / "study_b" / "all"
    together.mkdir(parents=True)
    for path in list(ct_b.iterdir()) + list(pet_b.iterdir()):
        path.rename(together / path.name)
    scout = tiny_volume(np.zeros((2, 4, 4), np.int16))
    for path in write_ct_series(scout, root / "study_b" / "scout", study_b, series_number=1):
        ds = pydicom.dcmread(path)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.save_as(path)
    for folder in (ct_b, pet_b, ct_b.parent):
        folder.rmdir()
    # A lone CT, and a CT/PET pair whose frames of reference differ.
    lone = another(study_info, patient_id="P3", study_uid="1.2.3.30")
    write_ct_series(tiny_volume(np.zeros((3, 4, 4), np.int16)), root / "lone_ct", lone)
    mismatch = another(study_info, patient_id="P4", study_uid="1.2.3.40", frame_of_reference_uid="1.2.3.41")
    ct_m, _ = write_dicom_pair(root / "mismatch", study=mismatch)
    for path in ct_m.iterdir():
        ds = pydicom.dcmread(path)
        ds.FrameOfReferenceUID = "1.2.3.42"
        ds.save_as(path)
    seg_file(root / "seg" / "seg.dcm", study_info.study_uid)
    # Junk.
    (root / "notes.txt").write_text("reading list")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "junk").mkdir()
    (root / "junk" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff")
    first_ct = sorted((root / "study_a" / "ct").iterdir())[0].read_bytes()
    (root / "junk" / "cut.dcm").write_bytes(first_ct[:-50])
    # Volume files: autoPET folders, nnU-Net pairs, <case>_ct/_pet, labels, strays.
    autopet = root / "autopet" / "PETCT_0a1b" / "03-23-2003-NA-PET-CT"
    for name in ("CT", "CTres", "SUV", "PET", "SEG"):
        small_volume(autopet / f"{name}.nii.gz")
    for name in ("CT", "PET"):
        small_volume(root / "autopet" / "PETCT_nosuv" / f"{name}.nii.gz")
    for name in ("case1_0000", "case1_0001", "case2_0000", "case3_0002"):
        small_volume(root / "nnunet" / "imagesTr" / f"{name}.nii.gz")
    small_volume(root / "nnunet" / "labelsTr" / "case1.nii.gz")
    small_volume(root / "named" / "pat7_ct.nrrd")
    small_volume(root / "named" / "pat7_pet.mha")
    small_volume(root / "named" / "pat7_seg.nrrd")
    for name in ("pat8_ct", "pat8_pet", "pat8_suv"):
        small_volume(root / "named" / f"{name}.nii.gz")
    small_volume(root / "other" / "random.nii.gz")
    (root / "other" / "vol.raw").write_bytes(b"\0" * 8)
    return root


def test_mixed_tree_pairs_and_skips(mixed_tree, study_info):
    scan = find_studies(mixed_tree)
    by_id = {study.study_id: study for study in scan}
    assert len(scan) == 6
    assert set(by_id) == {
        "TEST001_20240305", "P2_20240305", "autopet_PETCT_0a1b_03-23-2003-NA-PET-CT", "case1",
        "pat7", "pat8",
    }

    a = by_id["TEST001_20240305"]
    assert (a.kind, a.ct, a.pet) == ("dicom", mixed_tree / "study_a" / "ct", mixed_tree / "study_a" / "pet")
    assert (a.study_uid, a.frame_of_reference_uid) == (study_info.study_uid, study_info.frame_of_reference_uid)
    b = by_id["P2_20240305"]
    assert b.ct == b.pet == mixed_tree / "study_b" / "all"
    assert "chosen from 2 CT and 1 PET series" in b.description
    assert sitk.GetArrayFromImage(b.load_ct()).shape == (6, 10, 12)  # not the 2-slice localizer
    assert b.load_pet().GetMetaData("attumamba.units") == "SUVbw"

    autopet = by_id["autopet_PETCT_0a1b_03-23-2003-NA-PET-CT"]
    assert (autopet.kind, autopet.ct.name, autopet.pet.name) == ("nifti", "CT.nii.gz", "SUV.nii.gz")
    assert (by_id["case1"].ct.name, by_id["case1"].pet.name) == ("case1_0000.nii.gz", "case1_0001.nii.gz")
    assert (by_id["pat7"].ct.name, by_id["pat7"].pet.name) == ("pat7_ct.nrrd", "pat7_pet.mha")
    assert by_id["pat8"].pet.name == "pat8_suv.nii.gz"  # SUV preferred over a plain PET

    reasons = {item.path.relative_to(mixed_tree).as_posix(): item.reason for item in scan.skipped}
    expected = {
        "notes.txt": "not a DICOM file",
        ".DS_Store": "hidden file",
        "junk/broken.dcm": "corrupted",
        "junk/cut.dcm": "truncated DICOM file",
        "seg": "unsupported modality SEG (a segmentation)",
        "lone_ct": "lone CT series: no PET series in the same study",
        "mismatch/ct": "mismatched frame of reference",
        "mismatch/pet": "mismatched frame of reference",
        "study_b/scout": "not used, the study's CT is CT 'Synthetic CT' (6 files)",
        "autopet/PETCT_0a1b/03-23-2003-NA-PET-CT/SEG.nii.gz": "segmentation/label file",
        "autopet/PETCT_0a1b/03-23-2003-NA-PET-CT/CTres.nii.gz": "original CT of the same folder is used",
        "autopet/PETCT_0a1b/03-23-2003-NA-PET-CT/PET.nii.gz": "SUV of the same folder is used",
        "autopet/PETCT_nosuv/CT.nii.gz": "without SUV.nii.gz",
        "autopet/PETCT_nosuv/PET.nii.gz": "without SUV.nii.gz",
        "nnunet/imagesTr/case2_0000.nii.gz": "without its partner file (0001)",
        "nnunet/labelsTr/case1.nii.gz": "segmentation/label file",
        "named/pat7_seg.nrrd": "segmentation/label file",
        "named/pat8_pet.nii.gz": "extra file 'pet' of CT/PET pair 'pat8'",
        "nnunet/imagesTr/case3_0002.nii.gz": "extra file '0002' of nnU-Net pair 'case3'",
        "other/random.nii.gz": "matches no CT/PET naming pattern",
        "other/vol.raw": "raw pixel data",
    }
    assert set(reasons) == set(expected)
    for path, fragment in expected.items():
        assert fragment in reasons[path], (path, reasons[path])
    assert "1.2.3.42" in reasons["mismatch/pet"] and "1.2.3.41" in reasons["mismatch/ct"]


def test_progress_cancel_and_bad_roots(mixed_tree, tmp_path):
    seen: list[float] = []
    find_studies(mixed_tree / "study_a", progress=lambda f, stage: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    with pytest.raises(CancelledError):
        find_studies(mixed_tree, cancel=lambda: True)
    with pytest.raises(InputError, match="does not exist"):
        find_studies(tmp_path / "nowhere")
    with pytest.raises(InputError, match="is a file"):
        find_studies(mixed_tree / "notes.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(find_studies(empty)) == 0
