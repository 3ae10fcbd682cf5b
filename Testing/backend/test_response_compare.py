"""``attumamba-seg compare`` on a synthetic follow-up pair with its ground-truth masks (issue 18, items 4–6)."""

from __future__ import annotations

import csv
import json

import pytest

from attumamba.cli import main
from attumamba.synth import generate_pair, write_pair


@pytest.fixture(scope="module")
def pair_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs")
    pair = generate_pair(5, 0, tracer="fdg", profile="compact")
    return write_pair(pair, out), pair.truth


def compare(folder, out, *extra) -> int:
    return main(["compare", "--baseline", str(folder / "baseline"), "--follow-up", str(folder / "follow_up"),
                 "--baseline-labels", str(folder / "baseline" / "SEG_instances_ct.nii.gz"),
                 "--follow-up-labels", str(folder / "follow_up" / "SEG_instances_ct.nii.gz"),
                 "--rigid-only", "-o", str(out), *extra])


@pytest.mark.slow
def test_compare_on_ground_truth_agrees_with_the_true_response(pair_folder, tmp_path):
    folder, truth = pair_folder
    assert compare(folder, tmp_path / "response") == 0
    response = json.loads((tmp_path / "response" / "response.json").read_text())
    for system in ("recist", "percist", "deauville"):
        assert response["categories"][system]["category"] == truth["categories"][system]["category"], system
    # every matched lesion of the truth is matched to the same follow-up lesion
    true_pairs = {(r["baseline_id"], r["follow_up_id"]) for r in truth["lesions"] if r["kind"] == "matched"}
    found = {(g["baseline_ids"][0], g["follow_up_ids"][0]) for g in response["matching"]["groups"] if g["kind"] == "matched"}
    assert true_pairs <= found
    disappeared = {r["baseline_id"] for r in truth["lesions"] if r["kind"] == "disappeared"}
    assert disappeared == {g["baseline_ids"][0] for g in response["matching"]["groups"] if g["kind"] == "disappeared"}
    rows = list(csv.DictReader((tmp_path / "response" / "response.csv").open()))
    assert len(rows) == len(response["matching"]["groups"])
    assert (tmp_path / "response" / "response.png").stat().st_size > 10_000
    assert (tmp_path / "response" / "registration.h5").is_file()
    liver = response["references"]["baseline"]["liver"]
    assert liver["how"].startswith("proposed") and liver["stats"]["voxels"] > 50


@pytest.mark.slow
def test_reader_choices_change_the_call(pair_folder, tmp_path):
    folder, truth = pair_folder
    new = [r["follow_up_id"] for r in truth["lesions"] if r["kind"] == "new"]
    assert new, "this pair's scenario adds new lesions"
    reader = tmp_path / "reader.json"
    reader.write_text(json.dumps({"not_lesions": new, "targets": [1]}))
    assert compare(folder, tmp_path / "read", "--reader", str(reader)) == 0
    response = json.loads((tmp_path / "read" / "response.json").read_text())
    recist = response["categories"]["recist"]
    assert recist["targets_how"] == "chosen by the reader" and [t["baseline_id"] for t in recist["targets"]] == [1]
    assert response["new_lesions_counted"] == [] and recist["category"] != "PD"


def test_bad_reader_file_is_a_clear_error(pair_folder, tmp_path, capsys):
    folder, _ = pair_folder
    reader = tmp_path / "reader.json"
    reader.write_text(json.dumps({"targetz": [1]}))
    assert compare(folder, tmp_path / "x", "--reader", str(reader)) == 2
    assert "unknown key(s) targetz" in capsys.readouterr().err
