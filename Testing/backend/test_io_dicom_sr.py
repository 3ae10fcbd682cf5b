"""DICOM SR TID 1500 of the lesion report, beside its DICOM SEG: read back with highdicom/pydicom.

The round trip: SEG frames equal the labelmap; every SR measurement equals the report (value,
code, derivation, unit, RECIST end points); the SR references the SEG's segments and the CT.
``dciodvfy`` is not installed here: highdicom validates while it builds, and its parser reads
the files back. The references built from JSON stand in for the DICOM files just as well.
"""

from __future__ import annotations

import json

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from test_io_segmentation_files import _rebuilt_labels, _slice_index_by_sop

from attumamba.errors import InputError
from attumamba.io import load_volume
from attumamba.io.dicom_headers import files_in_folder, group_series
from attumamba.io.dicom_references import series_from_references
from attumamba.io.dicom_sr import write_dicom_seg_and_sr, write_dicom_sr
from attumamba.lesions.report import analyze_instances

SUV_UNITS = {"suv": "g/ml{SUVbw}", "sul": "g/ml{SUVlbm(Janma)}"}
SUV_NAMES = {"suv": ("126401", "DCM"), "sul": ("126405", "DCM")}
DERIVATIONS = {"max": "56851009", "mean": "373098007", "peak": "126031"}


@pytest.fixture
def study(tmp_path, write_dicom_pair):
    """A DICOM CT + PET pair, their volumes, a two-lesion labelmap on the CT and its report."""
    ct_dir, pet_dir = write_dicom_pair(tmp_path / "study", pet_slices=6)
    ct, pet = load_volume(ct_dir), load_volume(pet_dir)
    labels = np.zeros(ct.GetSize()[::-1], np.uint16)
    labels[1:4, 2:6, 3:8] = 1
    labels[4:6, 7:9, 9:11] = 2
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(ct)
    instances, report = analyze_instances(image, ct, pet)
    return ct_dir, pet_dir, ct, instances, report


def references_of(ct_dir, pet_dir=None) -> dict:
    """What the Slicer module sends: UIDs, grid and one position per slice, from the files' headers."""
    def series(folder):
        headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(folder.iterdir())]
        first = headers[0]
        return {"SeriesInstanceUID": first.SeriesInstanceUID, "FrameOfReferenceUID": first.FrameOfReferenceUID,
                "Rows": first.Rows, "Columns": first.Columns, "PixelSpacing": [float(v) for v in first.PixelSpacing],
                "ImageOrientationPatient": [float(v) for v in first.ImageOrientationPatient],
                "instances": [{"SOPInstanceUID": h.SOPInstanceUID,
                               "ImagePositionPatient": [float(v) for v in h.ImagePositionPatient]} for h in headers]}
    first = pydicom.dcmread(next(ct_dir.iterdir()), stop_before_pixels=True)
    references = {"StudyInstanceUID": first.StudyInstanceUID, "PatientID": first.PatientID,
                  "PatientName": str(first.PatientName), "PatientSex": first.PatientSex, "ct": series(ct_dir)}
    if pet_dir is not None:
        references["pet"] = series(pet_dir)
    return json.loads(json.dumps(references))


def _code(item) -> str | None:
    return None if item is None else item.value


def check_seg_and_sr(seg_path, sr_path, labels: np.ndarray, report: dict, ct_dir, pet_dir) -> None:
    """Everything the round trip promises, shared with the HTTP test."""
    seg = hd.seg.segread(seg_path)
    slice_of = _slice_index_by_sop(ct_dir, load_volume(ct_dir))
    assert np.array_equal(_rebuilt_labels(seg, slice_of, labels.shape), labels)

    sr = hd.sr.srread(sr_path)
    assert isinstance(sr, hd.sr.Comprehensive3DSR)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34" and sr.Modality == "SR"
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    ct_header = pydicom.dcmread(next(ct_dir.iterdir()), stop_before_pixels=True)
    assert (sr.StudyInstanceUID, sr.PatientID) == (ct_header.StudyInstanceUID, ct_header.PatientID)
    evidence = {s.SeriesInstanceUID: {i.ReferencedSOPInstanceUID for i in s.ReferencedSOPSequence}
                for study in sr.CurrentRequestedProcedureEvidenceSequence for s in study.ReferencedSeriesSequence}
    for folder in (ct_dir, pet_dir):
        headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in folder.iterdir()]
        assert evidence[headers[0].SeriesInstanceUID] == {h.SOPInstanceUID for h in headers}
    assert evidence[seg.SeriesInstanceUID] == {seg.SOPInstanceUID}

    content = sr.content
    assert isinstance(content, hd.sr.MeasurementReport)
    volumetric = content.get_volumetric_roi_measurement_groups()
    recist = content.get_image_measurement_groups()
    lesions = report["lesions"]
    assert len(volumetric) == len(recist) == len(lesions) >= 1
    sop_of_slice = {k: sop for sop, k in slice_of.items()}
    for lesion, group, axes in zip(lesions, volumetric, recist):
        number = lesion["id"]
        described = seg.get_segment_description(number)
        for g in (group, axes):
            assert g.tracking_identifier == f"Lesion {number}" == described.tracking_id
            assert g.tracking_uid == described.tracking_uid
            assert _code(g.finding_type) == "108369006" and _code(g.finding_category) == "49755003"
        segment = group.referenced_segment
        assert segment.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert segment.referenced_segment_numbers == [number]
        assert {s.referenced_sop_instance_uid for s in segment.source_images_for_segmentation} == \
            {sop_of_slice[k] for k in np.unique(np.nonzero(labels == number)[0])}
        measured = {(m.name.value, _code(m.derivation)): m for m in group.get_measurements()}
        expected = {("118565006", None): (lesion["volume_ml"], "cm3"), ("126033", None): (lesion["tlg"], "g"),
                    ("112031", "373098007"): (lesion["ct_mean_hu"], "[hnsf'U]")}
        for prefix in ("suv", "sul"):
            for what, derivation in DERIVATIONS.items():
                expected[(SUV_NAMES[prefix][0], derivation)] = (lesion[f"{prefix}_{what}"], SUV_UNITS[prefix])
        expected = {key: (value, unit) for key, (value, unit) in expected.items() if value is not None}
        assert set(measured) == set(expected)
        for key, (value, unit) in expected.items():
            assert measured[key].value == pytest.approx(value, rel=1e-9) and measured[key].unit.value == unit
        assert _code(measured[("118565006", None)].method) == "126030"  # sum of segmented voxels
        assert _code(axes.method) == "126081"  # RECIST 1.1
        by_name = {m.name.value: m for m in axes.get_measurements()}
        assert set(by_name) == {"103339001", "103340004"}
        for code, key in (("103339001", "long_axis"), ("103340004", "short_axis")):
            line = by_name[code]
            assert line.value == pytest.approx(lesion["recist"][f"{key}_mm"], rel=1e-9) and line.unit.value == "mm"
            (points,) = line.referenced_coordinates
            assert points.GraphicType == "POLYLINE"
            assert points.ReferencedFrameOfReferenceUID == ct_header.FrameOfReferenceUID
            assert np.allclose(points.value, lesion["recist"][f"{key}_lps"], atol=1e-4)  # stored as 32-bit floats


def _headers(folder):
    return group_series(files_in_folder(folder))[0][0]


def test_seg_and_sr_round_trip_from_the_files(tmp_path, study):
    ct_dir, pet_dir, ct, instances, report = study
    assert report["lesions"][0]["sul_max"] is not None  # the PET carries sex, height and weight
    written = write_dicom_seg_and_sr(instances, report, ct_dir, tmp_path / "out", pet=pet_dir, model_name="tiny v1")
    assert written == (tmp_path / "out" / "lesions_seg.dcm", tmp_path / "out" / "lesions_sr.dcm")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["lesions_seg.dcm", "lesions_sr.dcm"]
    check_seg_and_sr(*written, sitk.GetArrayFromImage(instances), report, ct_dir, pet_dir)
    sr = pydicom.dcmread(written[1])
    algorithm = hd.sr.srread(written[1]).content.get_volumetric_roi_measurement_groups()[0]
    assert sr.Manufacturer == "AttUMambaSeg" and sr.CompletionFlag == "COMPLETE" and sr.VerificationFlag == "UNVERIFIED"
    assert "AttUMambaSeg" in str(algorithm) and "model=tiny v1" in str(algorithm)


def test_seg_and_sr_from_references_equal_those_from_the_files(tmp_path, study):
    ct_dir, pet_dir, ct, instances, report = study
    ct_series, pet_series = series_from_references(references_of(ct_dir, pet_dir))
    written = write_dicom_seg_and_sr(instances, report, ct_series, tmp_path, pet=pet_series)
    check_seg_and_sr(*written, sitk.GetArrayFromImage(instances), report, ct_dir, pet_dir)


def test_without_pet_only_the_measured_values_are_written(tmp_path, study):
    ct_dir, _, ct, instances, _ = study
    _, report = analyze_instances(instances, ct)  # no PET: no SUV, SUL or TLG
    seg, sr = write_dicom_seg_and_sr(instances, report, ct_dir, tmp_path)
    for group in hd.sr.srread(sr).content.get_volumetric_roi_measurement_groups():
        assert {m.name.value for m in group.get_measurements()} == {"118565006", "112031"}


def test_no_lesion_writes_neither(tmp_path, study):
    ct_dir, pet_dir, ct, instances, _ = study
    empty = sitk.Image(instances)
    empty *= 0
    _, report = analyze_instances(empty, ct)
    assert write_dicom_seg_and_sr(empty, report, ct_dir, tmp_path / "out", pet=pet_dir) is None
    assert not (tmp_path / "out").exists()


def test_a_report_of_another_labelmap_is_refused(tmp_path, study):
    ct_dir, _, ct, instances, report = study
    seg, _ = write_dicom_seg_and_sr(instances, report, ct_dir, tmp_path)
    other = {**report, "lesions": [{**report["lesions"][0], "id": 7}]}
    with pytest.raises(InputError, match=r"lesions \[7\] of the report have no segment"):
        write_dicom_sr(other, seg, _headers(ct_dir).headers, tmp_path / "other.dcm")
    assert not (tmp_path / "other.dcm").exists()


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r.pop("StudyInstanceUID"), "references.StudyInstanceUID is missing"),
    (lambda r: r.pop("ct"), "references.ct is missing"),
    (lambda r: r["ct"].update(SeriesInstanceUID="1.2.abc"), "not a valid DICOM UID"),
    (lambda r: r["ct"].update(PixelSpacing=[3.0]), "PixelSpacing must be a list of 2 positive numbers"),
    (lambda r: r["ct"].update(Rows=0), "Rows must be a whole number"),
    (lambda r: r["ct"]["instances"][2].pop("ImagePositionPatient"), r"instances\[2\].ImagePositionPatient"),
    (lambda r: r["ct"]["instances"].append(dict(r["ct"]["instances"][0])), "listed twice"),
    (lambda r: r["ct"].update(instances=[]), "must list every slice"),
    (lambda r: r.update(PatientName=5), "PatientName must be a string"),
])
def test_bad_references_are_refused_with_what_is_wrong(study, change, message):
    references = references_of(study[0])
    change(references)
    with pytest.raises(InputError, match=message):
        series_from_references(references)


@pytest.mark.parametrize("given", [2.5, 2, [2.5], [2]])
def test_slice_thickness_is_taken_as_a_number_or_a_list_of_one(study, given):
    references = references_of(study[0])
    references["ct"]["SliceThickness"] = given
    ct_series, _ = series_from_references(references)
    assert {float(header.SliceThickness) for header in ct_series.headers} == {float(given[0] if isinstance(given, list)
                                                                                     else given)}


@pytest.mark.parametrize("given", [[2.5, 2.5], [], "2.5", ["2.5"], 0, -1.0, True, [float("nan")], None, {"mm": 2.5}])
def test_any_other_slice_thickness_is_refused_with_what_to_give(study, given):
    references = references_of(study[0])
    references["ct"]["SliceThickness"] = given
    with pytest.raises(InputError, match=r"references\.ct\.SliceThickness must be a positive number of mm \(or a "
                                         r"list of one\), not .*leave it out"):
        series_from_references(references)


def test_references_off_the_labelmap_grid_are_refused(tmp_path, study):
    ct_dir, _, ct, instances, report = study
    references = references_of(ct_dir)
    references["ct"]["instances"] = references["ct"]["instances"][:-1]  # a slice short
    with pytest.raises(InputError, match="not on the grid of CT series"):
        write_dicom_seg_and_sr(instances, report, series_from_references(references)[0], tmp_path / "out")
    moved = references_of(ct_dir)
    moved["ct"]["instances"][0]["ImagePositionPatient"][0] += 10.0
    with pytest.raises(InputError, match="not on the grid of CT series"):
        write_dicom_seg_and_sr(instances, report, series_from_references(moved)[0], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_batch_writes_neither_for_a_dicom_study_without_lesions(tmp_path, write_dicom_pair):
    from tiny_model import make_tiny_package

    from attumamba.batch import BatchSettings
    from attumamba.batch.task import segment_study
    from attumamba.io import find_studies

    write_dicom_pair(tmp_path / "tree" / "p1")
    (study,) = find_studies(tmp_path / "tree").studies
    model = make_tiny_package(tmp_path / "tiny", bias_lesion=-20.0)  # nothing is lesion
    outcome = segment_study(study, BatchSettings(model=str(model), device="cpu"))
    assert outcome.ok and outcome.totals["n_lesions"] == 0, outcome.error
    assert {"lesions.seg.nrrd", "lesions.json"} <= set(outcome.files)
    assert not {"lesions_seg.dcm", "lesions_sr.dcm"} & set(outcome.files)
