"""``attumamba-seg evaluate``: pairing by name, grids, summary conventions, exit code."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from attumamba.cli import main as cli_main


def _write(array: np.ndarray, path, spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0)):
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))


@pytest.fixture
def folders(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir(), gt.mkdir()
    mask = np.zeros((10, 12, 12), np.uint8)
    mask[3:7, 4:8, 4:8] = 1
    _write(mask, gt / "a.nii.gz")
    _write(mask, pred / "a.nii.gz")                       # perfect
    _write(np.zeros_like(mask), gt / "b.nii.gz")          # no lesion
    extra = np.zeros_like(mask)
    extra[0, 0, 0] = 1
    _write(extra, pred / "b.nii.gz")                      # one false-positive voxel: 2 µL
    _write(mask, gt / "c.nii.gz")                          # no prediction
    # a prediction on a twice-finer grid of the same space for case d
    fine = np.zeros((20, 24, 24), np.uint8)
    fine[6:14, 8:16, 8:16] = 1
    _write(mask, gt / "d.nii.gz")
    _write(fine, pred / "d.nii.gz", spacing=(0.5, 0.5, 1.0), origin=(-0.25, -0.25, -0.5))
    return pred, gt, tmp_path / "out"


def test_evaluate_writes_per_case_and_summary(folders, capsys):
    pred, gt, out = folders
    assert cli_main(["evaluate", "--pred", str(pred), "--gt", str(gt), "-o", str(out)]) == 1  # case c is missing
    assert "no prediction for 1 cases: c" in capsys.readouterr().out
    rows = {row["case"]: row for row in csv.DictReader(open(out / "per_case.csv"))}
    assert set(rows) == {"a", "b", "d"}
    assert float(rows["a"]["dice"]) == 1.0 and float(rows["d"]["dice"]) == 1.0  # resampled by nearest neighbour
    assert rows["b"]["dice"] == "" and float(rows["b"]["fpv_ml"]) == pytest.approx(0.002)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["missing_predictions"] == ["c"]
    assert summary["metrics"]["dice"] == {"mean": 1.0, "median": 1.0, "std": 0.0, "n": 2}  # empty GT not counted
    assert summary["metrics"]["fpv_ml"]["n"] == 3
    assert summary["metrics"]["fpv_ml"]["mean"] == pytest.approx(0.002 / 3)


def test_evaluate_refuses_folders_without_masks(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli_main(["evaluate", "--pred", str(tmp_path), "--gt", str(tmp_path / "empty"), "-o", str(tmp_path / "o")]) == 2
    assert "no ground-truth masks" in capsys.readouterr().err


def _lesion_folders(tmp_path):
    """Three cases: a (2 lesions: one found, one missed, one false positive), b (no lesion, one false
    positive), c (one lesion found)."""
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir(), gt.mkdir()
    truth, found = np.zeros((10, 20, 20), np.uint8), np.zeros((10, 20, 20), np.uint8)
    truth[2:5, 2:5, 2:5] = truth[2:5, 12:15, 12:15] = 1
    found[2:5, 2:5, 2:5] = found[7:9, 15:18, 2:5] = 1
    _write(truth, gt / "a.nii.gz"), _write(found, pred / "a.nii.gz")
    _write(np.zeros_like(truth), gt / "b.nii.gz"), _write(found, pred / "b.nii.gz")
    one = np.zeros_like(truth)
    one[4:8, 6:10, 6:10] = 1
    _write(one, gt / "c.nii.gz"), _write(one, pred / "c.nii.gz")
    return pred, gt


def test_evaluate_writes_lesion_counts_per_case_and_per_tracer_summaries(tmp_path, capsys):
    pred, gt = _lesion_folders(tmp_path)
    table = tmp_path / "tracers.csv"
    table.write_text("case,tracer\na,PSMA\nb,psma\nc,fdg\nnot_evaluated,fdg\n")
    out = tmp_path / "out"
    assert cli_main(["evaluate", "--pred", str(pred), "--gt", str(gt), "-o", str(out), "--tracers", str(table)]) == 0
    rows = {row["case"]: row for row in csv.DictReader(open(out / "per_case.csv"))}
    assert {k: rows["a"][k] for k in ("tracer", "lesion_tp", "lesion_fp", "lesion_fn", "lesion_f1")} == \
        {"tracer": "psma", "lesion_tp": "1", "lesion_fp": "1", "lesion_fn": "1", "lesion_f1": "0.5"}
    assert (rows["b"]["lesion_fp"], rows["b"]["lesion_f1"], rows["c"]["lesion_f1"]) == ("2", "", "1.0")
    summary = json.loads((out / "summary.json").read_text())
    assert "IoU >= 0.1" in summary["lesion_rule"]
    assert summary["lesions"] == {"tp": 2, "fp": 3, "fn": 1, "precision": 0.4, "recall": pytest.approx(2 / 3),
                                  "f1": 0.5}  # from the summed counts
    assert summary["metrics"]["lesion_f1"] == {"mean": 0.75, "median": 0.75, "std": 0.25, "n": 2}  # per case
    psma, fdg = summary["by_tracer"]["psma"], summary["by_tracer"]["fdg"]
    assert set(summary["by_tracer"]) == {"psma", "fdg"} and (psma["cases"], fdg["cases"]) == (2, 1)
    assert (psma["lesions"]["tp"], psma["lesions"]["fp"], psma["lesions"]["fn"]) == (1, 3, 1)
    assert psma["lesions"]["f1"] == pytest.approx(2 / 6) and fdg["lesions"]["f1"] == 1.0
    assert psma["metrics"]["dice"]["n"] == 1 and psma["metrics"]["fpv_ml"]["n"] == 2
    assert fdg["metrics"]["dice"]["mean"] == 1.0
    printed = capsys.readouterr().out
    assert "2 found, 3 false positive, 1 missed" in printed and "psma (2 cases)" in printed


def test_evaluate_reads_tracers_from_study_folders_the_case_name_or_one_for_all(tmp_path):
    from attumamba.training.case_tracers import read_tracers
    from attumamba.training.evaluate import evaluate_folders

    pred, gt = _lesion_folders(tmp_path)
    for name in ("a", "b", "c"):
        (gt / f"{name}.nii.gz").rename(gt / f"{'psma_' if name == 'c' else ''}{name}.nii.gz")
        (pred / f"{name}.nii.gz").rename(pred / f"{'psma_' if name == 'c' else ''}{name}.nii.gz")
    studies = tmp_path / "studies"
    (studies / "a").mkdir(parents=True), (studies / "b" / "truth").mkdir(parents=True)
    (studies / "a" / "ground_truth.json").write_text(json.dumps({"tracer": "fdg"}))          # synth's NIfTI layout
    (studies / "b" / "truth" / "ground_truth.json").write_text(json.dumps({"tracer": "psma"}))  # its DICOM layout
    rows, summary, _ = evaluate_folders(pred, gt, tmp_path / "out", tracers=read_tracers(studies))
    assert {row["case"]: row["tracer"] for row in rows} == {"a": "fdg", "b": "psma", "psma_c": "psma"}
    rows, summary, _ = evaluate_folders(pred, gt, tmp_path / "out2", tracer="FDG")
    assert {row["case"]: row["tracer"] for row in rows} == {"a": "fdg", "b": "fdg", "psma_c": "fdg"}
    rows, summary, _ = evaluate_folders(pred, gt, tmp_path / "out3")
    assert {row["case"]: row["tracer"] for row in rows} == {"a": "", "b": "", "psma_c": "psma"}
    assert list(summary["by_tracer"]) == ["psma"] and summary["cases"] == 3  # untraced cases count overall only


@pytest.mark.parametrize("table, message", [
    ("id,kind\na,psma\n", "columns case,tracer"),
    ("case,tracer\nx,psma\n", "names none of the evaluated cases"),
    ("case,tracer\na,psma\na,fdg\n", "listed as both psma and fdg"),
    ("case,tracer\na,\n", "the tracer is empty"),
])
def test_evaluate_explains_a_bad_tracer_table(tmp_path, capsys, table, message):
    pred, gt = _lesion_folders(tmp_path)
    (tmp_path / "t.csv").write_text(table)
    args = ["evaluate", "--pred", str(pred), "--gt", str(gt), "-o", str(tmp_path / "o"), "--tracers", str(tmp_path / "t.csv")]
    assert cli_main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing half-written
