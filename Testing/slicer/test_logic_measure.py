"""Re-measuring after edits: segments -> labelmap -> real backend -> table and lines refreshed in place."""

from __future__ import annotations

import importlib
import math
import threading
import time
import types

import numpy as np
import pytest
from mrml_helpers import count_voxels, edit_segment, paint_box

VOXEL_ML = 2.5 ** 3 / 1000.0


def _module(name: str):
    return importlib.import_module(f"AttUMambaSegLib.logic.{name}")


def _lesion(report: dict, number: int) -> dict:
    return next(lesion for lesion in report["lesions"] if lesion["id"] == number)


def _rows(result) -> dict[int, dict]:
    return {int(row["lesion"]): row for row in _module("tables").table_rows(result.table)}


def test_erasing_half_a_lesion_shrinks_its_volume_and_long_axis(handmade_result, handmade, scene, client):
    before = handmade_result.report
    nodes = scene.GetNumberOfNodes()

    def erase_right_half(voxels, extent):  # lesion 1 spans i = 5..16: keep 5..10
        voxels[:, :, 11 - extent[0]:] = 0

    edit_segment(handmade_result.segmentation, "Lesion 1", erase_right_half)
    assert count_voxels(handmade_result.segmentation, "Lesion 1") == 6 * 8 * 6
    handmade_result = _module("measure").update_measurements(client, handmade_result.segmentation)
    report = handmade_result.report

    old, new = _lesion(before, 1), _lesion(report, 1)
    assert math.isclose(new["volume_ml"], 6 * 8 * 6 * VOXEL_ML)
    assert new["volume_ml"] < old["volume_ml"] and new["recist"]["long_axis_mm"] < old["recist"]["long_axis_mm"]
    for number in (2, 3):
        assert _lesion(report, number)["volume_ml"] == _lesion(before, number)["volume_ml"]

    row = _rows(handmade_result)[1]
    assert math.isclose(row["volume_ml"], new["volume_ml"])
    assert math.isclose(row["long_axis_mm"], new["recist"]["long_axis_mm"])
    line = handmade_result.lines[(1, "long")]
    assert math.isclose(math.dist(*_module("axes").ends_ras(line)), new["recist"]["long_axis_mm"], rel_tol=1e-6)
    right_edge_ras = -(-48.75 + 10.5 * 2.5)  # LPS x of the last kept voxel's outer face, as RAS
    assert all(point[0] >= right_edge_ras - 1e-6 for point in _module("axes").ends_ras(line))
    assert scene.GetNumberOfNodes() == nodes  # refreshed in place: same table, same lines
    assert handmade_result.segmentation.GetNodeReference("AttUMambaSeg.LesionTable") is handmade_result.table


def test_a_single_remaining_segment_keeps_its_number(handmade_result, scene, client):
    segmentation = handmade_result.segmentation.GetSegmentation()
    for name in ("Lesion 1", "Lesion 3"):
        segmentation.RemoveSegment(segmentation.GetSegmentIdBySegmentName(name))
    nodes = scene.GetNumberOfNodes()
    handmade_result = _module("measure").update_measurements(client, handmade_result.segmentation)
    report = handmade_result.report
    assert [lesion["id"] for lesion in report["lesions"]] == [2]
    assert list(_rows(handmade_result)) == [2] and _rows(handmade_result)[2]["segment"] == "Lesion 2"
    assert sorted(handmade_result.lines) == [(2, "long"), (2, "short")]
    assert scene.GetNodesByClass("vtkMRMLMarkupsLineNode").GetNumberOfItems() == 2
    assert scene.GetNumberOfNodes() == nodes - 8  # four lines and their display nodes


def test_a_lesion_cut_in_two_stays_one_row(handmade_result, handmade, client):
    segmentation = handmade_result.segmentation.GetSegmentation()
    for name in ("Lesion 2", "Lesion 3"):
        segmentation.RemoveSegment(segmentation.GetSegmentIdBySegmentName(name))

    def cut(voxels, extent):
        voxels[:, :, 10 - extent[0]:12 - extent[0]] = 0

    edit_segment(handmade_result.segmentation, "Lesion 1", cut)
    handmade_result = _module("measure").update_measurements(client, handmade_result.segmentation)
    report = handmade_result.report
    (lesion,) = report["lesions"]
    assert lesion["id"] == 1 and lesion["merged_components"] == 2
    assert lesion["voxels"] == count_voxels(handmade_result.segmentation, "Lesion 1") == 6 * 8 * 10
    assert report["totals"]["n_lesions"] == 1


def test_a_segment_the_user_drew_is_measured_under_its_own_name(handmade_result, scene, client):
    segmentation_node = handmade_result.segmentation
    segment_id = segmentation_node.GetSegmentation().AddEmptySegment("", "Node A")
    paint_box(segmentation_node, segment_id, (30, 35, 30, 35, 2, 5))
    measured = _module("measure").update_measurements(client, segmentation_node)
    drawn = _lesion(measured.report, 4)
    assert drawn["segment"] == "Node A" and drawn["voxels"] == 6 * 6 * 4
    assert _rows(measured)[4]["segment"] == "Node A"
    assert measured.lines[(4, "long")].GetName() == "Node A long axis"


def test_a_study_the_backend_forgot_is_uploaded_again(handmade_result, client):
    report = _module("measure").update_measurements(client, handmade_result.segmentation, study_id="0" * 32).report
    assert len(report["lesions"]) == 3
    assert handmade_result.segmentation.GetAttribute("AttUMambaSeg.StudyID") not in ("0" * 32, None)


def test_merge_lesions_combines_like_one_lesion(logic):
    part = {"voxels": 10, "volume_ml": 1.0, "suv_max": 5.0, "suv_mean": 2.0, "suv_peak": 4.0, "tlg": 2.0,
            "ct_mean_hu": 10.0, "centroid_lps": [0.0, 0.0, 0.0],
            "recist": {"long_axis_mm": 10.0, "short_axis_mm": 5.0}}
    other = {**part, "voxels": 30, "volume_ml": 3.0, "suv_max": 7.0, "suv_mean": 4.0, "tlg": 12.0,
             "centroid_lps": [4.0, 0.0, 0.0], "recist": {"long_axis_mm": 20.0, "short_axis_mm": 1.0}}
    merged = _module("measure").merge_lesions([part, other], 7)
    assert merged["id"] == 7 and merged["voxels"] == 40 and merged["volume_ml"] == 4.0
    assert merged["suv_max"] == 7.0 and merged["tlg"] == 14.0
    assert np.isclose(merged["suv_mean"], 3.5) and np.allclose(merged["centroid_lps"], [3.0, 0.0, 0.0])
    assert merged["recist"]["long_axis_mm"] == 20.0


def test_a_failed_refresh_removes_the_lines_it_made(handmade_result, scene, client, monkeypatch):
    results = _module("results")
    segment_id = handmade_result.segmentation.GetSegmentation().AddEmptySegment("", "Node B")
    paint_box(handmade_result.segmentation, segment_id, (30, 35, 30, 35, 2, 5))
    nodes = scene.GetNumberOfNodes()
    original = results.set_axis

    def failing_for_the_new_segment(line, lesion, axis, name, color):
        if name == "Node B" and axis == "short":
            raise RuntimeError("out of memory")
        original(line, lesion, axis, name, color)

    monkeypatch.setattr(results, "set_axis", failing_for_the_new_segment)
    with pytest.raises(RuntimeError, match="out of memory"):
        _module("measure").update_measurements(client, handmade_result.segmentation)
    assert scene.GetNumberOfNodes() == nodes
    assert all(line.GetScene() is scene for line in handmade_result.lines.values())


@pytest.fixture
def slow_backend(monkeypatch):
    """The backend's measuring waits until the test opens ``gate``: a slow backend (``calls``: how many began)."""
    import attumamba.server.app as app

    slow = types.SimpleNamespace(gate=threading.Event(), calls=0)
    measure = app.analyze

    def gated(*args, **kwargs):
        slow.calls += 1
        assert slow.gate.wait(60), "the test never opened the gate"
        return measure(*args, **kwargs)

    monkeypatch.setattr(app, "analyze", gated)
    yield slow
    slow.gate.set()


def _erase_half_of_lesion_1(result) -> None:
    edit_segment(result.segmentation, "Lesion 1", lambda voxels, extent: voxels[:, :, 11 - extent[0]:].fill(0))


def _step_until_the_backend_measures(measuring, slow) -> None:
    """Step as the module's timer does until the labelmap reached the waiting backend; no step may wait."""
    deadline = time.monotonic() + 60
    steps = 0
    while slow.calls == 0 or steps < 5:
        started = time.monotonic()
        assert measuring.step()
        assert time.monotonic() - started < 0.5
        assert time.monotonic() < deadline, "the labelmap never reached the backend"
        steps += 1
        time.sleep(0.05)


def test_measuring_keeps_the_gui_free_and_refreshes_when_the_backend_answers(handmade_result, client, slow_backend):
    rows_before = _rows(handmade_result)
    _erase_half_of_lesion_1(handmade_result)
    measuring = _module("measure").Measuring(client, handmade_result.segmentation)
    _step_until_the_backend_measures(measuring, slow_backend)
    assert slow_backend.calls == 1 and _rows(handmade_result) == rows_before  # nothing refreshed yet

    slow_backend.gate.set()
    result = measuring.wait()
    assert not measuring.step() and measuring.error is None
    assert math.isclose(_rows(result)[1]["volume_ml"], 6 * 8 * 6 * VOXEL_ML)
    assert _rows(result)[1]["volume_ml"] < rows_before[1]["volume_ml"]


def test_a_cancelled_measuring_changes_no_node(handmade_result, client, slow_backend):
    rows_before = _rows(handmade_result)
    ends_before = {key: _module("axes").ends_ras(line) for key, line in handmade_result.lines.items()}
    _erase_half_of_lesion_1(handmade_result)
    measuring = _module("measure").Measuring(client, handmade_result.segmentation)
    folder = measuring._folder
    _step_until_the_backend_measures(measuring, slow_backend)
    transfer = measuring._pending
    measuring.cancel()
    assert transfer.wait_ended(2.0), "the transfer helper outlived the cancel"
    slow_backend.gate.set()  # the backend answers after all, to no one
    deadline = time.monotonic() + 30
    while folder.exists():
        assert time.monotonic() < deadline, "the cancelled measuring left its files"
        time.sleep(0.05)
    assert not measuring.step() and measuring.cancelled
    with pytest.raises(_module("run").RunCancelled, match="unchanged"):
        measuring.wait()
    assert _rows(handmade_result) == rows_before
    assert {key: _module("axes").ends_ras(line) for key, line in handmade_result.lines.items()} == ends_before
