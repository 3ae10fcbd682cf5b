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
