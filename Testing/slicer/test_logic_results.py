"""Backend results as MRML nodes on slicer-core: segments, table, RECIST lines, cleanup on failure."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import slicer
import vtk
from mrml_helpers import segment_voxels


def _module(name: str):
    return importlib.import_module(f"AttUMambaSegLib.logic.{name}")


def _build(handmade, scene, **kwargs):
    return _module("results").build_result(scene, handmade.ct, handmade.labelmap, handmade.report,
                                           pet_node=handmade.pet, study_id=handmade.study_id, **kwargs)


def test_one_segment_per_lesion_voxel_for_voxel(handmade, scene, logic):
    result = _build(handmade, scene)
    segmentation = result.segmentation.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 3
    for number in (1, 2, 3):
        segment_id = segmentation.GetSegmentIdBySegmentName(f"Lesion {number}")
        assert segment_id, f"no segment 'Lesion {number}'"
        image, voxels = segment_voxels(result.segmentation, segment_id)
        extent = image.GetExtent()
        expected = handmade.labels[extent[4]:extent[5] + 1, extent[2]:extent[3] + 1, extent[0]:extent[1] + 1]
        assert np.array_equal(voxels > 0, expected == number)
        assert np.count_nonzero(voxels) == np.count_nonzero(handmade.labels == number)
    merged, _ = _module("segments").export_labelmap(
        result.segmentation, _module("segments").label_values(segmentation))
    assert np.array_equal(merged, handmade.labels)


def test_segments_carry_terminology_colour_and_ct_geometry(handmade, scene, logic):
    result = _build(handmade, scene)
    segmentation = result.segmentation.GetSegmentation()
    colours = set()
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        entry = slicer.vtkSlicerTerminologyEntry()
        assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(
            segment.GetTerminology(), entry)
        assert entry.GetCategoryObject().GetCodeValue() == "49755003"
        assert entry.GetTypeObject().GetCodeValue() == "108369006"
        assert entry.GetTypeObject().GetCodingSchemeDesignator() == "SCT"
        colours.add(tuple(round(c, 3) for c in segment.GetColor()))
    assert len(colours) == 3
    assert result.segmentation.GetNodeReference("referenceImageGeometryRef") is handmade.ct
    geometry = _module("segments").reference_geometry(result.segmentation)
    matrix, ct_matrix = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    geometry.GetImageToWorldMatrix(matrix)
    handmade.ct.GetIJKToRASMatrix(ct_matrix)
    assert np.allclose(_module("geometry").from_vtk_matrix(matrix), _module("geometry").from_vtk_matrix(ct_matrix))


def test_table_matches_the_report(handmade, scene, logic):
    result = _build(handmade, scene)
    rows = _module("tables").table_rows(result.table)
    assert len(rows) == len(handmade.report["lesions"]) == 3
    for row, lesion in zip(rows, handmade.report["lesions"]):
        assert row["lesion"] == lesion["id"]
        assert row["segment"] == f"Lesion {lesion['id']}"
        for key in ("volume_ml", "suv_max", "suv_mean", "suv_peak", "tlg", "ct_mean_hu"):
            assert math.isclose(row[key], lesion[key], rel_tol=1e-9), key
        assert math.isclose(row["long_axis_mm"], lesion["recist"]["long_axis_mm"])
        assert math.isclose(row["short_axis_mm"], lesion["recist"]["short_axis_mm"])
        assert row["measurable"] == ("yes" if lesion["recist"]["measurable"] else "no")
    assert result.table.GetColumnUnitLabel("volume_ml") == "mL"


def test_axis_lines_lie_on_their_lesions_in_ras(handmade, scene, logic):
    axes, geometry = _module("axes"), _module("geometry")
    result = _build(handmade, scene)
    assert len(result.lines) == 6
    matrix = vtk.vtkMatrix4x4()
    handmade.ct.GetIJKToRASMatrix(matrix)
    ijk_to_ras = geometry.from_vtk_matrix(matrix)
    padded = np.pad(handmade.labels, 1)
    for (number, axis), line in result.lines.items():
        assert line.GetName() == f"Lesion {number} {axis} axis"
        assert line.GetLocked()
        ends = axes.ends_ras(line)
        assert len(ends) == 2
        lesion = next(le for le in handmade.report["lesions"] if le["id"] == number)
        assert math.isclose(math.dist(*ends), lesion["recist"][f"{axis}_axis_mm"], rel_tol=1e-6)
        for point in ends:
            i, j, k = np.rint(geometry.ras_to_ijk(ijk_to_ras, point)).astype(int) + 1
            around = padded[k - 1:k + 2, j - 1:j + 2, i - 1:i + 2]
            assert (around == number).any(), f"{line.GetName()} end {point} is not within a voxel of its lesion"


def test_results_sit_under_the_study_in_a_folder_named_after_the_segmentation(handmade, scene, logic):
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Patient")
    study = hierarchy.CreateStudyItem(patient, "PET/CT")
    for volume in (handmade.ct, handmade.pet):
        hierarchy.SetItemParent(hierarchy.GetItemByDataNode(volume), study)
    result = _build(handmade, scene, name="Run A")
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(result.segmentation)) == study
    assert hierarchy.GetItemName(result.folder) == "Run A"
    assert hierarchy.GetItemParent(result.folder) == study
    for node in (result.table, *result.lines.values()):
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == result.folder


def test_each_run_is_a_new_node_unless_replacing(handmade, scene, logic):
    first = _build(handmade, scene)
    second = _build(handmade, scene)
    assert second.segmentation is not first.segmentation
    assert first.segmentation.GetScene() is scene and first.segmentation.GetSegmentation().GetNumberOfSegments() == 3
    count = scene.GetNumberOfNodes()
    again = _build(handmade, scene, replace=first.segmentation)
    assert again.segmentation is first.segmentation
    assert again.table is first.table
    assert scene.GetNumberOfNodes() == count


def test_a_failure_half_way_removes_what_the_call_made(handmade, scene, logic, monkeypatch):
    results = _module("results")
    first = _build(handmade, scene)
    first.segmentation.GetSegmentation().GetSegment("Lesion_1").SetName("kept by the user")
    count = scene.GetNumberOfNodes()
    calls = []

    def failing_set_axis(*args, **kwargs):
        calls.append(args)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return original(*args, **kwargs)

    original = results.set_axis
    monkeypatch.setattr(results, "set_axis", failing_set_axis)
    with pytest.raises(RuntimeError, match="disk full"):
        _build(handmade, scene)
    assert scene.GetNumberOfNodes() == count
    calls.clear()
    with pytest.raises(RuntimeError, match="disk full"):
        _build(handmade, scene, replace=first.segmentation)
    names = {first.segmentation.GetSegmentation().GetNthSegment(n).GetName() for n in range(3)}
    assert "kept by the user" in names


def test_a_report_that_does_not_match_the_labelmap_makes_no_nodes(handmade, scene, logic):
    count = scene.GetNumberOfNodes()
    wrong = {**handmade.report, "lesions": [{**handmade.report["lesions"][0], "id": 9}]}
    with pytest.raises(ValueError, match=r"lesions \[9\]"):
        _module("results").build_result(scene, handmade.ct, handmade.labelmap, wrong)
    broken = {**handmade.report, "lesions": [{**handmade.report["lesions"][0], "recist": {}}]}
    with pytest.raises(ValueError, match="malformed"):
        _module("results").build_result(scene, handmade.ct, handmade.labelmap, broken)
    assert scene.GetNumberOfNodes() == count
