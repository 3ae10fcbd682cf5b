"""Building a result does not disturb the scene (issue 17, item 7): one batch, the user's active place
node and mouse mode kept, locked lines with labels for the selected lesion only, a table that fits the panel."""

from __future__ import annotations

import csv
import importlib
import io

import pytest
from scene_watch import SceneWatch


def _module(name: str):
    return importlib.import_module(f"AttUMambaSegLib.logic.{name}")


def _build(handmade, scene, **options):
    return _module("results").build_result(scene, handmade.ct, handmade.labelmap, handmade.report,
                                           pet_node=handmade.pet, study_id=handmade.study_id, **options)


@pytest.fixture
def watch(scene):
    watching = SceneWatch(scene)
    yield watching
    watching.close()


def test_a_result_keeps_the_users_place_node_and_mouse_mode(handmade, scene, watch):
    result = _build(handmade, scene)
    assert len(result.lines) == 2 * len(handmade.report["lesions"]) >= 6
    assert watch.users_choices_kept()

    for line in list(result.lines.values())[:2]:   # re-measuring makes the lines the user deleted again
        scene.RemoveNode(line)
    _module("results").refresh(_module("results").LesionResult.of(result.segmentation), handmade.report)
    assert watch.users_choices_kept()


def test_a_result_is_one_batch_of_the_scene(handmade, scene, watch):
    lesions = len(handmade.report["lesions"])
    result = _build(handmade, scene)
    assert lesions >= 3 and (watch.batches_started, watch.batches_ended) == (1, 1)
    lines = [added for added in watch.added if added[0] == "vtkMRMLMarkupsLineNode"]
    assert len(lines) == 2 * lesions and ("vtkMRMLTableNode", True) in watch.added
    assert all(inside for _, inside in watch.added), "a node was added outside the batch"
    assert not scene.IsBatchProcessing()

    watch.reset()
    _module("results").refresh(_module("results").LesionResult.of(result.segmentation), handmade.report)
    assert (watch.batches_started, watch.batches_ended) == (1, 1)


def test_a_failing_build_ends_the_batch_and_keeps_the_users_choices(handmade, scene, watch, monkeypatch):
    results = _module("results")
    original, calls = results.set_axis, []

    def failing_set_axis(*args, **kwargs):
        calls.append(args)
        if len(calls) == 4:
            raise RuntimeError("disk full")
        return original(*args, **kwargs)

    monkeypatch.setattr(results, "set_axis", failing_set_axis)
    count = scene.GetNumberOfNodes()
    with pytest.raises(RuntimeError, match="disk full"):
        _build(handmade, scene)
    assert not scene.IsBatchProcessing() and watch.batches_started == watch.batches_ended == 1
    assert scene.GetNumberOfNodes() == count and watch.users_choices_kept()


def test_lines_are_locked_and_only_the_selected_lesions_labels_show(handmade, scene, logic):
    results = _module("results")
    result = _build(handmade, scene)

    def labelled():
        return sorted(key for key, line in result.lines.items() if line.GetDisplayNode().GetPropertiesLabelVisibility())

    assert all(line.GetLocked() for line in result.lines.values())
    assert all(not line.GetDisplayNode().GetPointLabelsVisibility() for line in result.lines.values())
    assert labelled() == []
    results.show_lesion_labels(result.segmentation, 2)
    assert labelled() == [(2, "long"), (2, "short")]
    results.show_lesion_labels(result.segmentation, 3)
    assert labelled() == [(3, "long"), (3, "short")]
    results.show_lesion_labels(result.segmentation, None)
    assert labelled() == []


def test_the_panel_columns_fit_400_px_and_the_table_node_and_export_keep_all(handmade, scene, logic):
    view, tables = _module("lesion_view"), _module("tables")
    shown = view.column_shown()
    names = [column.name for column, visible in zip(tables.LESION_COLUMNS, shown) if visible]
    assert names == ["lesion", "volume_ml", "suv_max", "suv_peak", "long_axis_mm", "short_axis_mm"]
    assert len(names) <= 6 and view.estimated_width_px(shown) <= view.PANEL_WIDTH_PX == 400
    for index, visible in enumerate(shown):   # the default is the most that fits: any one more does not
        if not visible:
            assert view.estimated_width_px([*shown[:index], True, *shown[index + 1:]]) > 400
    assert all(len(line) <= 10 for header in view.headers() for line in header.split("\n"))

    result = _build(handmade, scene)
    table = result.table.GetTable()
    assert [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())] == \
        [column.name for column in tables.LESION_COLUMNS]
    exported = next(csv.reader(io.StringIO(_module("export").lesions_csv(result.report))))
    assert {"suv_mean", "tlg", "ct_mean_hu", "measurable"} <= set(exported)
