"""PERCIST reference regions proposed from CT and PET (issue 18, item 3), checked against the phantom."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from attumamba.response import sul_scale
from attumamba.response.references import NoReference, ReferenceRegion, measure, propose_blood_pool, propose_liver
from attumamba.synth import generate_study
from attumamba.synth.anatomy import tissue_map
from attumamba.synth.grid import Grid
from attumamba.synth.tissues import Tissue


@pytest.fixture(scope="module", params=[(3, 1), (8, 3)], ids=["fdg-a", "fdg-b"])
def study(request):
    return generate_study(*request.param, profile="compact")


def tissue_at(study, points) -> list[Tissue]:
    return [Tissue(tissue_map(study.case.patient, Grid((1, 1, 1), (1.0, 1.0, 1.0), tuple(map(float, p))))[0, 0, 0])
            for p in points]


def surface(region: ReferenceRegion) -> np.ndarray:
    """Points on the region's boundary (sphere: 26 directions; cylinder: its rim at both ends)."""
    centre = np.asarray(region.centre_lps)
    if region.length_mm is None:
        directions = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1) if (i, j, k) != (0, 0, 0)])
        return centre + region.radius_mm * directions / np.linalg.norm(directions, axis=1)[:, None]
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    rim = np.stack([np.cos(angles), np.sin(angles), np.zeros_like(angles)], axis=1) * region.radius_mm
    return np.concatenate([centre + rim + (0, 0, dz) for dz in (-region.length_mm / 2, region.length_mm / 2)])


def test_liver_sphere_lies_in_the_liver_clear_of_lesions(study):
    region = propose_liver(study.ct, study.suv, study.lesions_ct)
    assert set(tissue_at(study, surface(region))) == {Tissue.LIVER}
    for lesion in study.truth["lesions"]:
        assert np.linalg.norm(np.subtract(lesion["centre_lps_mm"], region.centre_lps)) > region.radius_mm
    stats = measure(region, study.suv, sul_scale(study.case.patient.sex, study.case.patient.height_m,
                                                 study.case.patient.weight_kg))
    truth = study.case.uptake[Tissue.LIVER]
    assert abs(stats["suv_mean"] / truth - 1) < 0.15
    assert stats["voxels"] > 50 and stats["sul_mean"] < stats["suv_mean"]
    assert "proposed" in region.how


def test_blood_pool_cylinder_lies_in_the_aorta(study):
    region = propose_blood_pool(study.ct, study.suv)
    assert set(tissue_at(study, surface(region))) == {Tissue.BLOOD}
    assert abs(measure(region, study.suv)["suv_mean"] / study.case.uptake[Tissue.BLOOD] - 1) < 0.25


def test_regions_given_by_coordinates_are_measured_where_given(study):
    liver = propose_liver(study.ct, study.suv)
    moved = ReferenceRegion("liver", tuple(np.add(liver.centre_lps, (0.0, 0.0, 300.0))), 15.0)  # into the chest
    assert measure(moved, study.suv)["suv_mean"] != pytest.approx(measure(liver, study.suv)["suv_mean"], rel=0.05)
    with pytest.raises(NoReference, match="holds no PET voxel"):
        measure(ReferenceRegion("liver", (5000.0, 0.0, 0.0), 15.0), study.suv)


def test_without_lungs_the_proposals_say_why(study):
    chestless = sitk.Threshold(study.ct, lower=-400, upper=4000, outsideValue=40)   # lungs become soft tissue
    with pytest.raises(NoReference, match="lung"):
        propose_liver(chestless, study.suv)
    with pytest.raises(NoReference, match="lungs"):
        propose_blood_pool(chestless, study.suv)


def test_a_liver_full_of_lesions_has_no_room_for_the_sphere(study):
    liver = propose_liver(study.ct, study.suv)
    spread = sitk.Image(study.ct.GetSize(), sitk.sitkUInt8)
    spread.CopyInformation(study.ct)
    z, y, x = np.indices(sitk.GetArrayViewFromImage(spread).shape, sparse=True)
    array = ((z % 8 < 4) & (y % 8 < 4) & (x % 8 < 4)).astype(np.uint8)   # 1 cm lesions 2 cm apart
    lesions = sitk.GetImageFromArray(array)
    lesions.CopyInformation(study.ct)
    with pytest.raises(NoReference, match="abnormal"):
        propose_liver(study.ct, study.suv, lesions)
    assert liver.kind == "liver"
