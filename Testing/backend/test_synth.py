"""Synthetic studies: determinism, exact ground truth, and realism that defeats thresholding."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from attumamba.cli import main as cli_main
from attumamba.io import find_studies, load_volume
from attumamba.synth import generate_study, synthesize
from attumamba.synth.anatomy import Patient, tissue_map
from attumamba.synth.grid import Grid
from attumamba.synth.study import case_rng
from attumamba.synth.tissues import Tissue

array = sitk.GetArrayFromImage


@pytest.fixture(scope="module")
def psma():
    return generate_study(11, 0, tracer="psma", profile="compact")


@pytest.fixture(scope="module")
def fdg():
    return generate_study(11, 1, tracer="fdg", profile="compact")


def test_same_seed_same_study_and_other_seed_differs(psma):
    again = generate_study(11, 0, tracer="psma", profile="compact")
    for name in ("ct", "suv", "lesions_ct", "lesions_pet"):
        assert np.array_equal(array(getattr(psma, name)), array(getattr(again, name))), name
    assert psma.truth == again.truth
    other = generate_study(12, 0, tracer="psma", profile="compact")
    assert not np.array_equal(array(psma.suv)[:10], array(other.suv)[:10]) or psma.truth != other.truth


def test_case_depends_only_on_seed_and_index(tmp_path):
    folders = synthesize(tmp_path, 2, seed=5, profile="compact", tracer="fdg", first_index=3)
    alone = generate_study(5, 4, tracer="fdg", profile="compact")
    written = sitk.ReadImage(str(folders[1] / "SUV.nii.gz"))
    assert np.array_equal(array(written), array(alone.suv))
    assert json.loads((folders[1] / "ground_truth.json").read_text()) == alone.truth


def _ellipsoid_surface_mm2(a, b, c) -> float:
    p = 1.6075  # Knud Thomsen's approximation, relative error below 1.1 %
    return 4 * np.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)


@pytest.mark.parametrize("grid_name", ["ct", "pet"])
def test_mask_volumes_match_the_analytic_volumes_within_voxelisation_error(psma, fdg, grid_name):
    checked = 0
    for study in (psma, fdg):
        spacing = np.array(study.truth["grids"][grid_name]["spacing_mm"])
        half_diagonal = 0.5 * float(np.linalg.norm(spacing))
        for lesion in study.truth["lesions"]:
            if lesion["shape"] == "lobulated":
                continue
            bound_ml = _ellipsoid_surface_mm2(*lesion["semi_axes_mm"]) * half_diagonal / 1000.0
            error = abs(lesion[f"volume_ml_{grid_name}_mask"] - lesion["volume_ml"])
            assert error <= bound_ml, (lesion["id"], error, bound_ml)
            checked += 1
    assert checked >= 3


def test_mask_ids_match_the_json_on_both_grids_and_seg_is_binary(psma, tmp_path):
    ids = {lesion["id"] for lesion in psma.truth["lesions"]}
    assert ids == set(range(1, len(ids) + 1))
    for image in (psma.lesions_ct, psma.lesions_pet):
        assert set(np.unique(array(image))) - {0} == ids
    (folder,) = synthesize(tmp_path, 1, seed=11, tracer="psma", profile="compact")
    seg = array(sitk.ReadImage(str(folder / "SEG.nii.gz")))
    instances = array(sitk.ReadImage(str(folder / "SEG_instances.nii.gz")))
    assert set(np.unique(seg)) <= {0, 1}
    assert np.array_equal(seg > 0, instances > 0)


def test_lesions_lie_inside_the_body(psma):
    labels, ct = array(psma.lesions_ct), array(psma.ct)
    assert ct[labels > 0].min() > -500  # no lesion voxel in air (noise is far below 500 HU)


def test_pet_and_ct_have_their_own_grids(psma):
    assert psma.ct.GetSpacing() != psma.suv.GetSpacing()
    assert psma.ct.GetOrigin() != psma.suv.GetOrigin()
    assert psma.ct.GetSize() != psma.suv.GetSize()


def test_partial_volume_lowers_small_lesions_suvmax(psma, fdg):
    found = 0
    for study in (psma, fdg):
        suv, labels = array(study.suv), array(study.lesions_pet)
        for lesion in study.truth["lesions"]:
            if lesion["volume_ml"] < 0.5 and lesion["suv"] > 5:
                assert suv[labels == lesion["id"]].max() < 0.9 * lesion["suv"]
                found += 1
    assert found >= 1, "expected at least one small hot lesion in the fixtures"


def test_a_threshold_cannot_separate_lesions_from_physiology(psma):
    suv, labels = array(psma.suv), array(psma.lesions_pet)
    weakest = min(suv[labels == lesion["id"]].max() for lesion in psma.truth["lesions"])
    above = suv >= weakest
    lesion_voxels = (above & (labels > 0)).sum()
    assert (above & (labels == 0)).sum() > 3 * lesion_voxels


def test_liver_on_patient_right_spleen_on_left():
    grid = Grid.covering((-250, -250, 0), (250, 250, 1100), (5.0, 5.0, 5.0))
    tissues = tissue_map(Patient.sample(case_rng(0, 0)), grid)
    x = grid.axis(0)[None, None, :] + np.zeros(grid.shape, np.float32)
    assert x[tissues == Tissue.LIVER].mean() < -20  # LPS: -x is the patient's right
    assert x[tissues == Tissue.SPLEEN].mean() > 20


def _mean_uptake(study, tissue: Tissue) -> float:
    """Mean SUV over a tissue, located by re-drawing the study's patient on the PET grid."""
    grid = Grid(study.suv.GetSize(), study.suv.GetSpacing(), study.suv.GetOrigin())
    tissues = tissue_map(Patient.sample(case_rng(study.truth["seed"], study.truth["index"])), grid)
    return float(array(study.suv)[tissues == tissue].mean())


def test_tracers_have_their_own_physiology(psma, fdg):
    assert _mean_uptake(fdg, Tissue.BRAIN) > 4.0
    assert _mean_uptake(psma, Tissue.BRAIN) < 1.0
    assert _mean_uptake(psma, Tissue.SALIVARY) > 6.0
    assert _mean_uptake(fdg, Tissue.SALIVARY) < 4.0


def test_cli_writes_the_autopet_layout_and_never_overwrites(tmp_path, capsys):
    out = tmp_path / "studies"
    assert cli_main(["synth", "--out", str(out), "--cases", "2", "--profile", "compact", "--seed", "3"]) == 0
    for case in ("synth_0000", "synth_0001"):
        names = {p.name for p in (out / case).iterdir()}
        assert {"CT.nii.gz", "CTres.nii.gz", "SUV.nii.gz", "SEG.nii.gz", "ground_truth.json"} <= names
    ctres = sitk.ReadImage(str(out / "synth_0000" / "CTres.nii.gz"))
    suv = sitk.ReadImage(str(out / "synth_0000" / "SUV.nii.gz"))
    assert ctres.GetSize() == suv.GetSize() and ctres.GetOrigin() == suv.GetOrigin()
    assert cli_main(["synth", "--out", str(out), "--cases", "1", "--profile", "compact"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_dicom_output_reads_back_as_suv(tmp_path):
    (folder,) = synthesize(tmp_path, 1, fmt="dicom", seed=11, tracer="psma", profile="compact")
    (study,) = find_studies(tmp_path).studies
    suv = load_volume(study.pet)
    expected = array(generate_study(11, 0, tracer="psma", profile="compact").suv)
    read = array(suv)
    assert read.shape == expected.shape
    # int16 storage with a per-slice slope: error below 1/32767 of each slice's maximum
    per_slice_max = expected.reshape(expected.shape[0], -1).max(axis=1)[:, None, None]
    assert np.all(np.abs(read - expected) <= per_slice_max / 30000 + 1e-6)
    assert (folder / "truth" / "ground_truth.json").exists()
