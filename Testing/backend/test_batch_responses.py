"""Batch runs that pair time points (issue 18, item 6): --pairs → OUT/responses/<patient>/ and
cohort_responses.csv, with the pairs checked before any study is segmented."""

from __future__ import annotations

import csv
import json

import pytest
import SimpleITK as sitk
from tiny_model import make_tiny_package, small_study

from attumamba.batch import BatchSettings, run_batch
from attumamba.errors import InputError


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("timepoints")
    for name, seed in (("anna_2026-01", 0), ("anna_2026-04", 1), ("ben_2026-02", 2)):
        ct, pet = small_study(seed)
        sitk.WriteImage(ct, str(root / f"{name}_ct.nii.gz"))
        sitk.WriteImage(pet, str(root / f"{name}_pet.nii.gz"))
    return root


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    model = make_tiny_package(tmp_path_factory.mktemp("model") / "tiny", bias_lesion=20.0)
    return BatchSettings(model=str(model), device="cpu", min_suv_max=3.0)


def pairs_file(folder, *rows):
    path = folder / "pairs.csv"
    path.write_text("patient,baseline,follow_up\n" + "".join(f"{','.join(r)}\n" for r in rows))
    return path


def test_pairs_are_compared_after_the_batch(tree, settings, tmp_path):
    pairs = pairs_file(tmp_path, ("anna", "anna_2026-01", "anna_2026-04"))
    summary = run_batch(tree, tmp_path / "out", settings, pairs_csv=pairs)
    assert summary.ok and len(summary.done) == 3
    [row] = summary.responses
    assert row["status"] == "done" and row["recist"] in ("CR", "PR", "SD", "PD", "NE"), row
    folder = tmp_path / "out" / "responses" / "anna"
    response = json.loads((folder / "response.json").read_text())
    assert response["categories"]["recist"]["category"] == row["recist"]
    assert {p.name for p in folder.iterdir()} >= {"response.json", "response.csv", "response.png", "registration.h5"}
    with open(tmp_path / "out" / "cohort_responses.csv", newline="") as handle:
        assert [r["patient"] for r in csv.DictReader(handle)] == ["anna"]
    assert "Response (baseline → follow-up)" in (tmp_path / "out" / "report.html").read_text()
    assert not list((tmp_path / "out" / "responses").glob(".*partial"))


def test_a_pair_naming_an_unknown_study_is_refused_before_any_work(tree, settings, tmp_path):
    pairs = pairs_file(tmp_path, ("anna", "anna_2026-01", "anna_2027-01"))
    with pytest.raises(InputError, match="no study 'anna_2027-01' was found"):
        run_batch(tree, tmp_path / "out", settings, pairs_csv=pairs)
    assert not (tmp_path / "out" / "studies").exists() or not any((tmp_path / "out" / "studies").iterdir())
    bad = tmp_path / "bad.csv"
    bad.write_text("who,when\nanna,2026\n")
    with pytest.raises(InputError, match="patient,baseline,follow_up"):
        run_batch(tree, tmp_path / "out2", settings, pairs_csv=bad)
