"""Export of a lesion result: every file reads back equal (SimpleITK, Slicer's reader, csv, json)."""

from __future__ import annotations

import csv
import importlib
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
from mrml_helpers import edit_segment


def _module(name: str):
    return importlib.import_module(f"AttUMambaSegLib.logic.{name}")


@pytest.mark.parametrize("labelmap_name", ["lesions.nii.gz", "case 7.nrrd"])
def test_exported_files_read_back_equal(handmade_result, handmade, scene, tmp_path, labelmap_name):
    paths = _module("export").export_result(handmade_result.segmentation, tmp_path / "out", labelmap_name=labelmap_name)
    stem = labelmap_name.split(".")[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [labelmap_name, f"{stem}.seg.nrrd", f"{stem}.csv", f"{stem}.json"])  # no temporary files left

    labelmap = sitk.ReadImage(str(paths["labelmap"]))
    assert np.array_equal(sitk.GetArrayFromImage(labelmap), handmade.labels)
    assert np.allclose(labelmap.GetOrigin(), handmade.image.GetOrigin())
    assert np.allclose(labelmap.GetSpacing(), handmade.image.GetSpacing())
    assert np.allclose(labelmap.GetDirection(), handmade.image.GetDirection())

    loaded = _read_segmentation(scene, paths["segmentation"])
    segmentation = loaded.GetSegmentation()
    names = sorted(segmentation.GetNthSegment(n).GetName() for n in range(segmentation.GetNumberOfSegments()))
    assert names == ["Lesion 1", "Lesion 2", "Lesion 3"]
    assert "108369006" in segmentation.GetNthSegment(0).GetTerminology()
    segments = _module("segments")
    merged, _ = segments.export_labelmap(loaded, segments.label_values(segmentation))
    assert np.array_equal(merged, handmade.labels)

    with paths["csv"].open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["id"]) for row in rows] == [lesion["id"] for lesion in handmade.report["lesions"]]
    for row, lesion in zip(rows, handmade.report["lesions"]):
        assert math.isclose(float(row["volume_ml"]), lesion["volume_ml"])
        assert math.isclose(float(row["suv_peak"]), lesion["suv_peak"])
        assert math.isclose(float(row["long_axis_mm"]), lesion["recist"]["long_axis_mm"])
        assert math.isclose(float(row["centroid_x_lps"]), lesion["centroid_lps"][0])
        assert row["segment"] == f"Lesion {lesion['id']}"
    assert json.loads(paths["json"].read_text()) == handmade_result.report


def _read_segmentation(scene, path):
    import slicer

    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "read back")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    return node


def test_existing_files_are_kept_unless_overwriting_is_asked(handmade_result, tmp_path):
    export = _module("export")
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    (tmp_path / "lesions.csv").write_text("mine")
    with pytest.raises(FileExistsError, match="lesions.csv"):
        export.export_result(handmade_result.segmentation, tmp_path)
    assert (tmp_path / "lesions.csv").read_text() == "mine"
    assert not (tmp_path / "lesions.nii.gz").exists()
    export.export_result(handmade_result.segmentation, tmp_path, overwrite=True)
    assert (tmp_path / "lesions.csv").read_text().startswith("id,voxels,volume_ml")


def test_edited_segments_are_not_exported_with_old_measurements(handmade_result, client, tmp_path):
    def erase(voxels, extent):
        voxels[:, :, : voxels.shape[2] // 2] = 0

    edit_segment(handmade_result.segmentation, "Lesion 2", erase)
    with pytest.raises(ValueError, match=r"lesions \[2\].*update the measurements"):
        _module("export").export_result(handmade_result.segmentation, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    updated = _module("measure").update_measurements(client, handmade_result.segmentation)
    paths = _module("export").export_result(handmade_result.segmentation, tmp_path / "out")
    exported = json.loads(paths["json"].read_text())
    assert exported["lesions"] == updated.report["lesions"]


def test_a_labelmap_name_needs_a_volume_suffix(handmade_result, tmp_path):
    with pytest.raises(ValueError, match="must end with"):
        _module("export").export_result(handmade_result.segmentation, tmp_path, labelmap_name="lesions.png")
