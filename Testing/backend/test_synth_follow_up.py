"""Follow-up pairs from ``synth --follow-up`` (issue 18, item 1)."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from attumamba.cli import main
from attumamba.synth import generate_pair, generate_study
from attumamba.synth.evolution import SCENARIOS


@pytest.fixture(scope="module")
def pair():
    return generate_pair(3, 2, tracer="fdg", profile="compact")


def test_baseline_is_the_plain_study_and_the_follow_up_is_the_same_patient_moved(pair):
    plain = generate_study(3, 2, tracer="fdg", profile="compact")
    assert np.array_equal(sitk.GetArrayViewFromImage(plain.suv), sitk.GetArrayViewFromImage(pair.baseline.suv))
    base, follow = pair.baseline.dicom_study, pair.follow_up.dicom_study
    assert follow.patient_id == base.patient_id and follow.patient_sex == base.patient_sex
    assert follow.study_uid != base.study_uid and follow.frame_of_reference_uid != base.frame_of_reference_uid
    assert 56 <= (follow.study_datetime - base.study_datetime).days < 121
    assert abs(follow.patient_weight_kg / base.patient_weight_kg - 0.98) <= 0.061
    pose = pair.truth["pose"]
    shift = np.linalg.norm(pose["translation_mm"])
    assert 0 < shift <= 30.0 + 1e-6 and max(abs(a) for a in pose["rotation_deg_xyz"]) <= 5.0
    # new scanner noise: the two CTs differ even where the anatomy does not move much
    assert not np.array_equal(sitk.GetArrayViewFromImage(pair.baseline.ct), sitk.GetArrayViewFromImage(pair.follow_up.ct))


def test_lesions_follow_the_pose_and_the_truth_links_them(pair):
    truth = pair.truth
    assert truth["scenario"] in SCENARIOS
    from attumamba.synth.pose import Pose

    pose = Pose(tuple(truth["pose"]["rotation_deg_xyz"]), tuple(truth["pose"]["translation_mm"]),
                truth["pose"]["breathing_mm"], truth["pose"]["diaphragm_z_mm"])
    follow_ids = {entry["id"] for entry in pair.follow_up.truth["lesions"]}
    for row in truth["lesions"]:
        if row["kind"] != "matched":
            continue
        assert row["follow_up_id"] in follow_ids
        expected = pose.body_to_scanner(np.array([row["baseline"]["centre_lps_mm"]]), _grid(pair.follow_up))[0]
        assert np.linalg.norm(expected - np.array(row["follow_up"]["centre_lps_mm"])) < 1.0
        # the follow-up mask holds the lesion where the truth says
        centre = pair.follow_up.lesions_ct.TransformPhysicalPointToIndex(row["follow_up"]["centre_lps_mm"])
        assert pair.follow_up.lesions_ct[centre] in (row["follow_up_id"], 0)
    assert {r["kind"] for r in truth["lesions"]} <= {"matched", "disappeared", "new"}


def _grid(study):
    from attumamba.synth.grid import Grid

    image = study.ct
    return Grid(image.GetSize(), image.GetSpacing(), image.GetOrigin())


def test_true_categories_follow_the_scenario(pair):
    categories = pair.truth["categories"]
    expected = {"complete": ("CR", "CMR"), "partial": ("PR", "PMR"), "stable": ("SD", "SMD"),
                "growth": ("PD", "PMD"), "new": ("PD", "PMD")}[pair.truth["scenario"]]
    assert (categories["recist"]["category"], categories["percist"]["category"]) in (expected, (expected[0], "NE"),
                                                                                     ("NE", expected[1]), ("NE", "NE"))
    assert categories["deauville"] is not None          # FDG
    assert categories["recist"]["rule"] and categories["percist"]["numbers"]


def test_sul_truth_uses_the_visit_weight(pair):
    sul = pair.truth["sul"]
    assert sul["baseline"]["available"] and sul["follow_up"]["weight_kg"] == pair.follow_up.dicom_study.patient_weight_kg
    assert sul["baseline"]["formula"].startswith("Janmahasatian")


@pytest.mark.slow
def test_cli_writes_pairs_in_dicom_with_patient_size_and_weight(tmp_path):
    out = tmp_path / "pairs"
    assert main(["synth", "--out", str(out), "--cases", "1", "--seed", "5", "--profile", "compact", "--format", "dicom",
                 "--follow-up", "--tracer", "psma"]) == 0
    case = out / "synth_0000"
    truth = json.loads((case / "response_truth.json").read_text())
    assert truth["categories"]["deauville"] is None    # PSMA: no Deauville
    headers = [pydicom.dcmread(next((case / when / "PET").iterdir()), stop_before_pixels=True)
               for when in ("baseline", "follow_up")]
    assert headers[0].PatientID == headers[1].PatientID
    assert all(h.PatientSex in ("M", "F") and float(h.PatientSize) > 1 and float(h.PatientWeight) > 30 for h in headers)
    assert headers[0].StudyInstanceUID != headers[1].StudyInstanceUID
    assert (case / "follow_up" / "truth" / "SEG.nii.gz").is_file()


def test_true_uptake_is_measured_on_the_written_pet_in_true_regions(pair):
    """The truth's SUVmax is the written PET's maximum in the true mask (blur and noise included),
    and its reference regions lie in the true liver and aorta, with the image's SD."""
    rows = [r for r in pair.truth["lesions"] if r["follow_up"] is not None]
    assert rows
    for row in rows:
        lesion = row["follow_up"]
        assert lesion["suv_peak"] <= lesion["suv_max"] + 1e-6
        assert lesion["activity_suv"] > 0 and lesion["sul_peak"] < lesion["suv_peak"]
    # measured, not painted: blur, partial volume and noise move every lesion's SUVmax off its activity
    assert all(abs(r["follow_up"]["suv_max"] - r["follow_up"]["activity_suv"]) > 1e-3 for r in rows)
    small = [r["follow_up"] for r in rows if r["follow_up"]["volume_ml"] < 1.0]
    assert all(lesion["suv_peak"] < lesion["activity_suv"] for lesion in small)
    for when, study in (("baseline", pair.baseline), ("follow_up", pair.follow_up)):
        regions, values = pair.truth["reference_regions"][when], pair.truth["references"][when]
        hu = study.ct_on_pet[study.ct_on_pet.TransformPhysicalPointToIndex(regions["liver"]["centre_lps_mm"])]
        assert 20 < hu < 110, f"the true liver sphere's centre is not liver on CT ({hu} HU)"
        activity = pair.truth["activity"][when]
        assert values["liver_suv"] == pytest.approx(activity["liver_suv"], rel=0.15)
        assert values["blood_pool_suv"] == pytest.approx(activity["blood_pool_suv"], rel=0.25)
        assert values["liver_sul_sd"] > 0.02 and values["blood_pool_sul_sd"] > 0.02
    threshold = pair.truth["categories"]["percist"]
    assert "SD" in json.dumps(threshold)
