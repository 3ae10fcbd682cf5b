"""Studies -> nnU-Net v2 raw dataset, checked by nnU-Net's own integrity verification."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

from attumamba.cli import main as cli_main
from attumamba.errors import InputError
from attumamba.synth import synthesize
from attumamba.training import convert_studies

array = sitk.GetArrayFromImage


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("studies")
    nifti = synthesize(root / "nifti", 2, seed=21, profile="compact")
    dicom = synthesize(root / "dicom", 1, seed=21, profile="compact", fmt="dicom", first_index=2)
    unlabelled = root / "unlabelled"
    unlabelled.mkdir()
    shutil.copy(nifti[0] / "CT.nii.gz", unlabelled / "patientX_ct.nii.gz")
    shutil.copy(nifti[0] / "SUV.nii.gz", unlabelled / "patientX_pet.nii.gz")
    return root, nifti, dicom


def test_conversion_writes_a_dataset_that_nnunet_verifies(studies, tmp_path):
    root, nifti, dicom = studies
    report = convert_studies(root, tmp_path, 501, "SynthPETCT")
    folder = tmp_path / "Dataset501_SynthPETCT"
    assert report.folder == folder
    assert len(report.training) == 3 and len(report.test) == 1
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["numTraining"] == 3 and meta["labels"] == {"background": 0, "lesion": 1}
    assert meta["channel_names"] == {"0": "CT", "1": "CT"}
    verify_dataset_integrity(str(folder), num_processes=1)  # raises on any inconsistency

    # NIfTI study: channels are CT on the PET grid and SUV; the label is the binary SEG
    case = next(c for c in report.training if "synth_0000" in c.lower() or c.startswith("synth_0000"))
    suv = sitk.ReadImage(str(nifti[0] / "SUV.nii.gz"))
    ct_channel = sitk.ReadImage(str(folder / "imagesTr" / f"{case}_0000.nii.gz"))
    assert ct_channel.GetSize() == suv.GetSize() and np.allclose(ct_channel.GetOrigin(), suv.GetOrigin())
    ctres = array(sitk.ReadImage(str(nifti[0] / "CTres.nii.gz")))
    # CTres was truncated to int16 (< 1 HU) from the in-memory CT; ours comes from the NIfTI CT, whose
    # float32 header shifts interpolation weights by ~1e-5 voxel: a few hundredths of a HU at bone edges
    assert np.abs(array(ct_channel) - ctres).max() < 1.05
    np.testing.assert_array_equal(array(sitk.ReadImage(str(folder / "imagesTr" / f"{case}_0001.nii.gz"))), array(suv))
    label = array(sitk.ReadImage(str(folder / "labelsTr" / f"{case}.nii.gz")))
    np.testing.assert_array_equal(label, array(sitk.ReadImage(str(nifti[0] / "SEG.nii.gz"))))

    # DICOM study: its ground truth came from truth/SEG.nii.gz
    dicom_case = next(c for c in report.training if c != case and not c.lower().startswith("synth_0001"))
    dicom_label = array(sitk.ReadImage(str(folder / "labelsTr" / f"{dicom_case}.nii.gz")))
    np.testing.assert_array_equal(dicom_label, array(sitk.ReadImage(str(dicom[0] / "truth" / "SEG.nii.gz"))))
    assert (folder / "imagesTs" / f"{report.test[0]}_0001.nii.gz").exists()


def test_refuses_to_reuse_a_dataset_id_and_needs_labels(studies, tmp_path):
    root, nifti, _ = studies
    (tmp_path / "Dataset502_Other").mkdir()
    with pytest.raises(InputError, match="already uses dataset id 502"):
        convert_studies(root, tmp_path, 502, "New")
    with pytest.raises(InputError, match="has a lesion mask"):
        convert_studies(root / "unlabelled", tmp_path / "x", 503, "NoLabels")
    with pytest.raises(InputError, match="no CT/PET study"):
        convert_studies(tmp_path / "Dataset502_Other", tmp_path / "y", 504, "Empty")


def test_cli_needs_to_know_the_raw_folder(studies, capsys, monkeypatch):
    monkeypatch.delenv("nnUNet_raw", raising=False)
    assert cli_main(["dataset", str(studies[0]), "--id", "505"]) == 2
    assert "--nnunet-raw" in capsys.readouterr().err


def test_cancel_leaves_no_half_made_dataset(studies, tmp_path):
    from attumamba.errors import CancelledError

    calls = []

    def cancel_after_first() -> bool:
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(CancelledError, match="no dataset was written"):
        convert_studies(studies[0], tmp_path, 506, "Cancelled", cancel=cancel_after_first)
    assert list(tmp_path.iterdir()) == []
