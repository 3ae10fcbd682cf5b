"""`attumamba-seg batch` on a 6-study mixed tree: two DICOM studies, three NIfTI pairs (one
with no uptake above the SUVmax filter, so no lesions) and one broken study.

The model is the tiny test package with its lesion logit biased to +20: everything is lesion,
so each study's lesions are exactly what the SUVmax ≥ 3 filter keeps — known in advance.
"""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import SimpleITK as sitk
from tiny_model import make_tiny_package, small_study

from attumamba.batch import BatchSettings, run_batch
from attumamba.cli import main as cli_main
from attumamba.errors import CancelledError

DONE = {"patientA_20240305", "patientB_20240305", "case1", "case2", "cold"}  # DICOM: patient id + study date


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_tiny_package(tmp_path_factory.mktemp("model") / "tiny", bias_lesion=20.0)


@pytest.fixture(scope="module")
def tree(tmp_path_factory, write_dicom_pair, study_info):
    root = tmp_path_factory.mktemp("cohort")
    for name, seed in (("patientA", 1), ("patientB", 2)):
        info = dataclasses.replace(study_info, patient_id=name, study_uid=f"1.2.826.0.1.3680043.8.498.{seed}1",
                                   frame_of_reference_uid=f"1.2.826.0.1.3680043.8.498.{seed}2")
        write_dicom_pair(root / "dicom" / name, study=info, seed=seed)
    nifti = root / "nifti"
    nifti.mkdir(parents=True)
    for name, seed in (("case1", 0), ("case2", 1)):
        ct, pet = small_study(seed)
        sitk.WriteImage(ct, str(nifti / f"{name}_ct.nii.gz"))
        sitk.WriteImage(pet, str(nifti / f"{name}_pet.nii.gz"))
    ct, pet = small_study(2)
    sitk.WriteImage(ct, str(nifti / "cold_ct.nii.gz"))
    sitk.WriteImage(pet * 0.0 + 1.0, str(nifti / "cold_pet.nii.gz"))  # SUV 1 everywhere: nothing passes SUVmax ≥ 3
    (nifti / "broken_ct.nii.gz").write_bytes(b"\x1f\x8b not a volume at all")
    sitk.WriteImage(pet, str(nifti / "broken_pet.nii.gz"))
    return root


def settings(model) -> BatchSettings:
    return BatchSettings(model=str(model), device="cpu", min_suv_max=3.0)


def rows(path) -> dict[str, dict]:
    with open(path, newline="") as handle:
        return {row["study_id"]: row for row in csv.DictReader(handle)}


def labels(out, study_id) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(out / "studies" / study_id / "lesions.nii.gz")))


@pytest.fixture(scope="module")
def local_run(tree, model, tmp_path_factory):
    """One run through the CLI, in this process: (output folder, exit code, what it printed)."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("local") / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli_main(["batch", str(tree), "-o", str(out), "--model", str(model), "--device", "cpu",
                         "--min-suv-max", "3"])
    return out, code, printed.getvalue()


def test_a_mixed_tree_gives_every_per_study_file_cohort_tables_and_a_failure_record(local_run):
    out, code, printed = local_run
    assert code == 1  # one study failed
    assert "5 studies segmented, 1 failed" in printed and "failed broken" in printed

    for study_id in DONE:
        files = {p.name for p in (out / "studies" / study_id).iterdir()}
        assert {"lesions.nii.gz", "lesions.seg.nrrd", "lesions.json", "lesions.csv", "mip.png", "study.json"} <= files
        assert ("lesions_seg.dcm" in files) == study_id.startswith("patient")  # DICOM SEG only for DICOM inputs
        assert ("lesions_sr.dcm" in files) == study_id.startswith("patient")  # and its SR TID 1500 report
    assert not list((out / "studies").glob(".*"))  # no partial study left
    failure = json.loads((out / "failed" / "broken.json").read_text())
    assert not failure["ok"] and "broken_ct.nii.gz" in failure["error"]

    studies = rows(out / "cohort_studies.csv")
    assert {k: v["status"] for k, v in studies.items()} == {**dict.fromkeys(DONE, "done"), "broken": "failed"}
    assert studies["cold"]["n_lesions"] == "0"
    for study_id in DONE - {"cold"}:  # everything is lesion: one lesion, the SUVmax of the whole PET
        report = json.loads((out / "studies" / study_id / "lesions.json").read_text())
        assert report["totals"]["n_lesions"] == 1 == int(studies[study_id]["n_lesions"])
        assert float(studies[study_id]["mtv_ml"]) == pytest.approx(report["totals"]["mtv_ml"])
        lesion = labels(out, study_id)
        assert set(np.unique(lesion)) <= {0, 1} and (lesion == 1).sum() == report["lesions"][0]["voxels"]
        if study_id.startswith("case"):  # CT and PET cover the same cube: every CT voxel is lesion
            assert (lesion == 1).all()
    with open(out / "cohort_lesions.csv", newline="") as handle:
        lesion_rows = list(csv.DictReader(handle))
    assert sorted(r["study_id"] for r in lesion_rows) == sorted(DONE - {"cold"})
    page = (out / "report.html").read_text()
    assert page.count("<img ") == 5 and "<td>broken</td><td>failed</td>" in page


def test_the_batch_labelmap_equals_the_one_study_command(tree, model, local_run, tmp_path):
    out = local_run[0]
    single = tmp_path / "single"
    assert cli_main(["segment", "--ct", str(tree / "nifti" / "case1_ct.nii.gz"), "--pet",
                     str(tree / "nifti" / "case1_pet.nii.gz"), "--model", str(model), "--device", "cpu",
                     "--min-suv-max", "3", "-o", str(single)]) == 0
    assert np.array_equal(labels(out, "case1"), sitk.GetArrayFromImage(sitk.ReadImage(str(single / "lesions.nii.gz"))))


def test_an_interrupted_run_resumes_without_redoing_or_touching_finished_studies(tree, model, tmp_path, capsys):
    out = tmp_path / "out"
    finished, running = [], {}

    def cancel_inside_the_third_study() -> bool:  # asked between the tiles of the third good study
        return len(finished) >= 2 and running.get("stage") == "preprocessing" and running["id"] not in finished

    def progress(study_id, fraction, stage):
        running.update(id=study_id, stage=stage)

    with pytest.raises(CancelledError):
        run_batch(tree, out, settings(model), on_progress=progress,
                  on_done=lambda study, outcome: outcome.ok and finished.append(study.study_id),
                  should_cancel=cancel_inside_the_third_study)
    assert len(finished) == 2 and running["id"] not in {p.name for p in (out / "studies").iterdir()}
    assert not list((out / "studies").glob(".*"))
    snapshot = {p: (p.stat().st_mtime_ns, p.read_bytes()) for s in finished for p in (out / "studies" / s).iterdir()}
    statuses = sorted(r["status"] for r in rows(out / "cohort_studies.csv").values())
    assert statuses == ["done", "done", "failed", "not run", "not run", "not run"]  # the cohort says where it stopped

    args = ["batch", str(tree), "-o", str(out), "--model", str(model), "--device", "cpu", "--min-suv-max", "3"]
    assert cli_main(args) == 2  # never writes over earlier results without --resume
    assert "--resume" in capsys.readouterr().err
    assert cli_main([*args, "--resume"]) == 1  # the broken study still fails
    assert "3 studies segmented, 1 failed, 2 kept from before" in capsys.readouterr().out
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in snapshot} == snapshot
    assert {k for k, v in rows(out / "cohort_studies.csv").items() if v["status"] == "done"} == DONE


def _outputs(out) -> dict:
    """Everything a scale-out path must reproduce: labelmaps, reports without timings, cohort rows."""
    reports = {}
    for study_id in DONE:
        report = json.loads((out / "studies" / study_id / "lesions.json").read_text())
        reports[study_id] = (labels(out, study_id).tobytes(), json.dumps(report["lesions"]), report["totals"])
    cohort = {k: {c: v for c, v in row.items() if c != "seconds"} for k, row in rows(out / "cohort_studies.csv").items()}
    return {"reports": reports, "cohort": cohort}


@pytest.mark.parametrize("scale", [{"workers": 2}, {"ray_address": "local"}], ids=["workers", "ray"])
def test_scale_out_gives_the_same_outputs_as_the_local_run(tree, model, local_run, tmp_path, scale):
    there = run_batch(tree, tmp_path / "there", settings(model), **scale)
    assert sorted(there.done) == sorted(DONE) and set(there.failed) == {"broken"}
    assert _outputs(tmp_path / "there") == _outputs(local_run[0])
