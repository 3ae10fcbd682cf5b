"""Export DICOM SEG + SR on slicer-core against the real backend: a result on volumes "loaded from DICOM"
(real DICOM files, their instance UIDs on the nodes, a stand-in for Slicer's DICOM database that
knows their files) is exported after an edit; the SEG's frames are the segmentation's labelmap and
the SR's measurements are the module's lesion report, read back with highdicom. A backend that lost
the study gets it again; what cannot be exported is refused before anything is sent or written."""

from __future__ import annotations

import datetime as dt
import importlib
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from conftest import handmade_labels
from mrml_helpers import edit_segment, load_volume
from test_io_dicom_sr import check_seg_and_sr
from tiny_model import small_study

from attumamba.io import DicomStudyInfo, PetDose, load_volume as load_dicom, write_ct_series, write_pet_series

STUDY = DicomStudyInfo(patient_id="EXPORT01", patient_name="Export^Test", patient_sex="F", patient_age_years=58,
                       patient_weight_kg=64.0, patient_size_m=1.66, study_uid="1.2.826.0.1.3680043.8.498.7001",
                       frame_of_reference_uid="1.2.826.0.1.3680043.8.498.7002",
                       study_datetime=dt.datetime(2025, 2, 3, 9, 30))
DOSE = PetDose(radiopharmaceutical="Fluorodeoxyglucose", radionuclide="F-18", half_life_s=6586.2,
               injected_dose_bq=300e6, injection_datetime=dt.datetime(2025, 2, 3, 8, 30),
               series_datetime=dt.datetime(2025, 2, 3, 9, 30))


class FakeDicomDatabase:
    """What the export uses of ``slicer.dicomDatabase``: instance UID -> file ('' when unknown, as ctk answers)."""

    def __init__(self, *folders: Path):
        self.files = {}
        for folder in folders:
            for path in folder.iterdir():
                self.files[pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID] = str(path)

    def fileForInstance(self, uid: str) -> str:
        return self.files.get(uid, "")


def load_series(scene, folder: Path, name: str, tmp_path: Path):
    """A volume node as Slicer's DICOM module loads one: voxels of the series and its instance UIDs in slice order."""
    image = load_dicom(folder)  # CT in HU, PET in SUVbw
    sitk.WriteImage(image, str(tmp_path / f"{name}.nrrd"))
    node = load_volume(scene, tmp_path / f"{name}.nrrd", name)
    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in folder.iterdir()]
    headers.sort(key=lambda h: image.TransformPhysicalPointToIndex([float(v) for v in h.ImagePositionPatient])[2])
    node.SetAttribute("DICOM.instanceUIDs", " ".join(h.SOPInstanceUID for h in headers))
    node.SetAttribute("DICOM.Modality", headers[0].Modality)
    return node, tmp_path / f"{name}.nrrd"


@pytest.fixture
def dicom_result(scene, client, logic, tmp_path):
    """The handmade lesions measured by the backend on a CT/PET pair loaded from DICOM, as a result's nodes."""
    from AttUMambaSegLib.logic.results import build_result

    ct_image, pet_image = small_study()
    write_ct_series(ct_image, tmp_path / "dicom" / "ct", STUDY)
    write_pet_series(pet_image, tmp_path / "dicom" / "pet", STUDY, DOSE)
    ct_dir, pet_dir = tmp_path / "dicom" / "ct", tmp_path / "dicom" / "pet"
    (ct, ct_file), (pet, pet_file) = (load_series(scene, ct_dir, "CT", tmp_path),
                                      load_series(scene, pet_dir, "PET", tmp_path))
    labels = handmade_labels(sitk.ReadImage(str(ct_file)))
    sitk.WriteImage(labels, str(tmp_path / "lesions.nrrd"), useCompression=True)
    study_id = client.upload_study(ct_file, pet_file)["study_id"]
    report = client.measure(study_id, tmp_path / "lesions.nrrd")
    result = build_result(scene, ct, tmp_path / "lesions.nrrd", report, pet_node=pet, study_id=study_id)
    return result.segmentation, ct_dir, pet_dir, FakeDicomDatabase(ct_dir, pet_dir)


@pytest.fixture
def dicom_export(logic):
    return importlib.import_module("AttUMambaSegLib.logic.dicom_export")


def _labels_and_report(node):
    from AttUMambaSegLib.logic.results import LesionResult
    from AttUMambaSegLib.logic.segments import export_labelmap, label_values

    return export_labelmap(node, label_values(node.GetSegmentation()))[0], LesionResult.of(node).report


def _shrink_lesion_1(node):
    edit_segment(node, "Lesion 1", lambda voxels, extent: voxels[:, :, 11 - extent[0]:].fill(0))


def test_an_edited_result_round_trips_through_dicom_seg_and_sr(dicom_result, client, dicom_export, tmp_path):
    from AttUMambaSegLib.logic.measure import Measuring
    from AttUMambaSegLib.logic.transfers import Transfer

    node, ct_dir, pet_dir, database = dicom_result
    _shrink_lesion_1(node)
    Measuring(client, node).wait()  # Update measurements
    progress = []
    export = dicom_export.DicomExport(client, node, tmp_path / "out", database,
                                      on_progress=lambda *p: progress.append(p))
    transfers = []  # stepped as the GUI's timer does, noting what the helper process moves
    while export.step():
        if isinstance(export._pending, Transfer) and export._pending not in transfers:
            transfers.append(export._pending)
        time.sleep(0.01)
    assert export.error is None, export.error
    files = export.result
    (sent,) = transfers  # the labelmap up and the zip down in the transfer helper, not in Slicer's process
    assert [name for name, _ in sent.calls] == ["export_dicom"]
    ct_reference = sent.calls[0][1][2]["ct"]
    thickness = pydicom.dcmread(next(ct_dir.iterdir()), stop_before_pixels=True).SliceThickness
    assert type(ct_reference["SliceThickness"]) is float and ct_reference["SliceThickness"] == float(thickness)
    assert files == {"seg": tmp_path / "out" / "lesions_seg.dcm", "sr": tmp_path / "out" / "lesions_sr.dcm"}
    assert export.state == "done" and progress[-1][0] == "done"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["lesions_seg.dcm", "lesions_sr.dcm"]
    labels, report = _labels_and_report(node)
    assert [lesion["id"] for lesion in report["lesions"]] == [1, 2, 3] and report["lesions"][0]["voxels"] < 6 * 8 * 12
    check_seg_and_sr(files["seg"], files["sr"], labels, report, ct_dir, pet_dir)
    sr = pydicom.dcmread(files["sr"])
    assert (sr.PatientName, sr.PatientSex) == ("Export^Test", "F")


def test_a_study_the_backend_lost_is_sent_again(dicom_result, client, dicom_export, tmp_path):
    from AttUMambaSegLib.logic.results import STUDY_ATTRIBUTE

    node, ct_dir, pet_dir, database = dicom_result
    node.SetAttribute(STUDY_ATTRIBUTE, "0" * 32)  # as after a backend restart
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "lesions_sr.dcm").write_bytes(b"the user's file")
    with pytest.raises(FileExistsError, match="lesions_sr.dcm"):
        dicom_export.DicomExport(client, node, tmp_path / "out", database)
    assert (tmp_path / "out" / "lesions_sr.dcm").read_bytes() == b"the user's file"

    files = dicom_export.DicomExport(client, node, tmp_path / "out", database, overwrite=True).wait(timeout_s=120)
    assert node.GetAttribute(STUDY_ATTRIBUTE) not in ("0" * 32, None)  # uploaded again by re-measuring
    check_seg_and_sr(files["seg"], files["sr"], *_labels_and_report(node), ct_dir, pet_dir)


def test_what_cannot_be_exported_is_refused_before_anything_is_sent(dicom_result, client, dicom_export, logic,
                                                                    tmp_path):
    from AttUMambaSegLib.logic.dicom_sources import NotFromDicom, unavailable_reason
    from AttUMambaSegLib.logic.results import CT_ROLE

    node, _, _, database = dicom_result
    out = tmp_path / "out"
    assert unavailable_reason(node, database) == ""
    assert "DICOM database is not open" in unavailable_reason(node, None)
    assert "Segment first" in unavailable_reason(None, database)

    _shrink_lesion_1(node)  # edited, not re-measured: the SR would not hold the table's numbers
    with pytest.raises(ValueError, match=r"lesions \[1\] are out of date.*Update measurements"):
        dicom_export.DicomExport(client, node, out, database)

    lost = FakeDicomDatabase(tmp_path / "dicom" / "pet")  # the CT's files are gone from the database
    with pytest.raises(ValueError, match="DICOM files of 'CT' are no longer where"):
        dicom_export.DicomExport(client, node, out, lost)

    ct = node.GetNodeReference(CT_ROLE)
    ct.RemoveAttribute("DICOM.instanceUIDs")  # a CT loaded from a NRRD file
    assert "was not loaded from Slicer's DICOM database" in unavailable_reason(node, database)
    with pytest.raises(NotFromDicom, match="use Export"):
        dicom_export.DicomExport(client, node, out, database)
    assert not out.exists()


def test_a_labelmap_on_the_pet_grid_is_put_on_the_ct_grid(study_nodes, dicom_export):
    from AttUMambaSegLib.logic.volumes import volume_array

    ct, pet = study_nodes[:2]
    pet_shape_kji, pet_grid = volume_array(pet)[0].shape, volume_array(pet)[1]
    labels = np.zeros(pet_shape_kji, np.uint16)
    labels[4:6, 7:10, 2:6] = 2  # 2 × 3 × 4 PET voxels of 5 mm
    moved, grid = dicom_export.on_volume_grid(labels, pet_grid, ct)
    assert moved.shape == volume_array(ct)[0].shape and np.allclose(grid, volume_array(ct)[1])
    assert np.count_nonzero(moved == 2) == 8 * 24 and set(np.unique(moved)) == {0, 2}  # 8 CT voxels of 2.5 mm each
    same, same_grid = dicom_export.on_volume_grid(moved, grid, ct)
    assert same is moved and same_grid is grid
