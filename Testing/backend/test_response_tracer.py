"""Deauville is a scale for FDG: scored for FDG, read as FDG with a note when the PET names no
tracer, and not scored for PSMA (issue 18, item 5)."""

from __future__ import annotations

import pytest

from attumamba.io.patient import set_tracer
from attumamba.response.assess import ReaderInputs, assess_response
from attumamba.response.registration import register_follow_up
from attumamba.response.timepoint import measured
from attumamba.synth import generate_pair


@pytest.fixture(scope="module")
def psma_pair():
    pair = generate_pair(5, 1, tracer="psma", profile="compact")
    points = []
    for name, study in (("baseline", pair.baseline), ("follow-up", pair.follow_up)):
        info = study.dicom_study
        points.append(measured(name, study.ct, study.suv, study.lesions_ct, "truth",
                               (info.patient_sex, info.patient_size_m, info.patient_weight_kg)))
    return pair, points, register_follow_up(pair.baseline.ct, pair.follow_up.ct, deformable=False)


@pytest.mark.slow
def test_deauville_follows_the_tracer(psma_pair):
    pair, (baseline, follow_up), registration = psma_pair
    unnamed = assess_response(baseline, follow_up, registration=registration)
    assert unnamed["categories"]["deauville"] is not None
    assert any("does not name its tracer" in note for note in unnamed["categories"]["deauville"]["notes"])

    for point in (baseline, follow_up):
        set_tracer(point.pet, pair.baseline.dose.radiopharmaceutical)   # as a DICOM PET carries it
    psma = assess_response(baseline, follow_up, registration=registration)
    assert psma["categories"]["deauville"] is None
    assert any("Deauville not scored" in note and "PSMA-11" in note for note in psma["notes"])
    assert psma["categories"]["percist"] == unnamed["categories"]["percist"]   # PERCIST is for any tracer

    told = assess_response(baseline, follow_up, ReaderInputs(tracer="FDG"), registration=registration)
    assert told["categories"]["deauville"]["category"] == unnamed["categories"]["deauville"]["category"]
    assert not any("does not name" in note for note in told["categories"]["deauville"]["notes"])
