"""Batch runs from the Slicer side against the real backend on loopback: start, poll like the GUI's
timer, per-study status, open a finished study as nodes (geometry, segments, table), re-measure it,
cancel, and the errors a user can meet (backend down, bad folder, study not finished)."""

from __future__ import annotations

import importlib
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import REPO

TOKEN = "slicer-batch-token"
#: A signed permutation (det +1): the opened CT must land where the file says, not where the identity would.
ROTATED = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


def _module(name: str):
    return importlib.import_module(f"AttUMambaSegLib.logic.{name}")


@pytest.fixture(scope="module")
def backend(tmp_path_factory, logic):
    """The real backend with the tiny random-weight model: dozens of small lesions per study."""
    from attumamba.server import Limits, ServerState, create_app
    from loopback import serving
    from tiny_model import make_tiny_package

    model = make_tiny_package(tmp_path_factory.mktemp("models") / "tiny")
    with serving(create_app(ServerState(token=TOKEN, limits=Limits()))) as url:
        yield _module("client").BackendClient(url, TOKEN), str(model)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two studies as a user's folder holds them: alpha with a rotated grid, beta axis-aligned."""
    from tiny_model import small_study

    root = tmp_path_factory.mktemp("studies")
    for name, seed, direction in (("alpha", 0, ROTATED), ("beta", 1, None)):
        for image, kind in zip(small_study(seed), ("ct", "pet")):
            if direction is not None:
                centre = np.asarray(image.GetSpacing()) * (np.asarray(image.GetSize()) - 1) / 2
                image.SetDirection(direction)
                image.SetOrigin(tuple(-np.asarray(direction).reshape(3, 3) @ centre))  # same cube, turned
            sitk.WriteImage(image, str(root / f"{name}_{kind}.nii.gz"))
    return root


def _start(backend, folder, out, **extra):
    client, model = backend
    return _module("batch").BatchRun(client, str(folder), str(out), model=model, device="cpu",
                                     poll_interval_s=0.05, **extra)


def _drive(run, timeout_s: float = 300.0) -> list[float]:
    """Call poll() as the GUI's timer would until the batch ends; the duration of every call."""
    durations = []
    deadline = time.monotonic() + timeout_s
    while not run.finished:
        start = time.monotonic()
        run.poll()
        durations.append(time.monotonic() - start)
        assert time.monotonic() < deadline, f"the batch is stuck: {run.status}"
        time.sleep(0.02)
    return durations


@pytest.fixture(scope="module")
def finished(backend, folder, tmp_path_factory):
    """A batch of both studies, polled to the end."""
    run = _start(backend, folder, tmp_path_factory.mktemp("batch") / "out")
    seen = []
    original = run._set
    run._set = lambda status: (seen.append(status["state"]), original(status))
    return run, _drive(run), seen


def test_a_batch_runs_every_study_and_reports_each(finished):
    run, durations, seen = finished
    assert run.state == "done", run.status
    assert "running" in seen and seen[-1] == "done"
    assert max(durations) < 0.5, "poll() waited for the backend"  # segmenting one study takes seconds
    studies = {s["study_id"]: s for s in run.status["studies"]}
    assert sorted(studies) == ["alpha", "beta"]
    assert all(s["state"] == "done" and s["n_lesions"] > 1 for s in studies.values())
    rows = run.rows()
    assert [(study, openable) for study, openable, _ in rows] == [("alpha", True), ("beta", True)]
    for study, _, cells in rows:
        assert len(cells) == len(_module("batch").COLUMNS)
        assert cells[:3] == (study, "done", str(studies[study]["n_lesions"]))
        assert float(cells[3]) == pytest.approx(studies[study]["mtv_ml"], abs=0.0051)
    assert run.summary().startswith("Done: 2 segmented") and "2 of 2 studies finished" in run.summary()


def _ras_of(node, ijk) -> np.ndarray:
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array(matrix.MultiplyPoint((*map(float, ijk), 1.0))[:3])


def _voxels(node) -> np.ndarray:
    return _module("volumes").volume_array(node)[0]


@pytest.fixture
def opened(finished, backend, scene, tmp_path):
    run = finished[0]
    client = backend[0]
    result = _module("batch").open_batch_study(client, run.batch_id, "alpha", scene)
    labelmap = client.download_batch_labelmap(run.batch_id, "alpha", tmp_path / "alpha.nrrd")
    return result, sitk.ReadImage(str(labelmap))


def test_an_opened_study_has_its_volumes_where_the_files_put_them(opened, folder):
    study, _ = opened
    assert (study.ct.GetName(), study.pet.GetName()) == ("alpha CT", "alpha PET")
    for node, kind in ((study.ct, "ct"), (study.pet, "pet")):
        original = sitk.ReadImage(str(folder / f"alpha_{kind}.nii.gz"))
        values = sitk.GetArrayFromImage(original)
        voxels = _voxels(node)
        assert voxels.size == values.size
        for ijk in ((0, 0, 0), (3, 7, 11), tuple(np.array(voxels.shape[::-1]) - 1)):
            ras = _ras_of(node, ijk)
            lps = (-ras[0], -ras[1], ras[2])  # the one sign flip between Slicer and the file
            index = original.TransformPhysicalPointToContinuousIndex(lps)
            assert np.allclose(index, np.round(index), atol=1e-4), f"{kind} voxel {ijk} is off the file's grid"
            i, j, k = (round(c) for c in index)
            assert voxels[ijk[2], ijk[1], ijk[0]] == pytest.approx(float(values[k, j, i]), rel=1e-5)
    assert not np.allclose(_ras_of(study.ct, (1, 0, 0)) - _ras_of(study.ct, (0, 0, 0)), (-2.5, 0, 0)), \
        "the rotated grid came back axis-aligned"


def test_an_opened_study_has_the_batchs_segments_and_table(opened, scene):
    study, labelmap = opened
    segments, results, tables = _module("segments"), _module("results"), _module("tables")
    segmentation = study.result.segmentation
    labels, ijk_to_ras = segments.export_labelmap(segmentation, segments.label_values(segmentation.GetSegmentation()))
    expected = sitk.GetArrayFromImage(labelmap)
    assert labels.shape == expected.shape and np.array_equal(labels, expected)  # voxel for voxel
    file_grid = _module("geometry").ijk_to_ras_from_lps(labelmap.GetOrigin(), labelmap.GetSpacing(),
                                                        labelmap.GetDirection())
    assert np.allclose(ijk_to_ras, file_grid, atol=1e-4)

    report = study.result.report
    assert segmentation.GetSegmentation().GetNumberOfSegments() == len(report["lesions"]) == expected.max()
    rows = {int(row["lesion"]): row for row in tables.table_rows(study.result.table)}
    assert sorted(rows) == sorted(lesion["id"] for lesion in report["lesions"])
    for lesion in report["lesions"]:
        row = rows[lesion["id"]]
        assert row["segment"] == f"Lesion {lesion['id']}"
        assert row["volume_ml"] == pytest.approx(lesion["volume_ml"])
        assert row["suv_max"] == pytest.approx(lesion["suv_max"])
        assert row["long_axis_mm"] == pytest.approx(lesion["recist"]["long_axis_mm"])
    assert len(study.result.lines) == 2 * len(report["lesions"])

    assert study.result.study_id == study.store_id
    assert segmentation.GetNodeReference(results.CT_ROLE) is study.ct
    assert segmentation.GetNodeReference(results.PET_ROLE) is study.pet
    hierarchy = _module("hierarchy")
    study_item = hierarchy.study_item(scene, study.ct)
    assert study_item and hierarchy.subject_hierarchy(scene).GetItemName(study_item) == "alpha"
    assert hierarchy.study_item(scene, segmentation) == study_item == hierarchy.study_item(scene, study.pet)


def test_update_measurements_on_an_opened_study_uses_the_stored_study(opened, backend):
    study, _ = opened
    before = {lesion["id"]: lesion for lesion in study.result.report["lesions"]}
    segmentation = study.result.segmentation.GetSegmentation()
    segmentation.RemoveSegment(segmentation.GetSegmentIdBySegmentName("Lesion 1"))
    result = _module("measure").update_measurements(backend[0], study.result.segmentation)
    after = {lesion["id"]: lesion for lesion in result.report["lesions"]}
    assert sorted(after) == sorted(set(before) - {1})
    for number, lesion in after.items():  # the same labels on the same study: the same numbers
        assert lesion["volume_ml"] == pytest.approx(before[number]["volume_ml"])
        assert lesion["suv_max"] == pytest.approx(before[number]["suv_max"])
    assert result.study_id == study.store_id, "the study was uploaded again instead of measured where it is"
    assert (1, "long") not in result.lines and result.table.GetNumberOfRows() == len(after)


def test_opening_in_the_background_never_waits(finished, backend, scene):
    run = finished[0]
    opening = _module("batch").StudyOpening(backend[0], run.batch_id, "beta", scene)
    durations = []
    while True:
        start = time.monotonic()
        going = opening.step()
        durations.append(time.monotonic() - start)
        if not going:
            break
        time.sleep(0.01)
    assert opening.error is None, opening.error
    assert max(durations[:-1], default=0.0) < 0.1  # only the last step makes nodes
    assert opening.result.ct.GetName() == "beta CT" and opening.result.result.report["lesions"]
    assert not opening._folder.exists(), "the folder outlived the step that made the nodes"


def test_a_study_without_results_cannot_be_opened_and_nothing_is_added(finished, backend, scene):
    run = finished[0]
    nodes = scene.GetNumberOfNodes()
    client_module = _module("client")
    with pytest.raises(client_module.BackendError, match="409.*not finished.*not in this batch") as error:
        _module("batch").open_batch_study(backend[0], run.batch_id, "gamma", scene)
    assert error.value.status == 409
    opening = _module("batch").StudyOpening(backend[0], run.batch_id, "gamma", scene)
    while opening.step():
        time.sleep(0.01)
    assert isinstance(opening.error, client_module.BackendError) and opening.result is None
    assert scene.GetNumberOfNodes() == nodes
    assert not opening._folder.exists(), "the failed opening left its folder"


def test_a_cancelled_opening_adds_nothing_and_removes_its_files(finished, backend, scene):
    run = finished[0]
    nodes = scene.GetNumberOfNodes()
    opening = _module("batch").StudyOpening(backend[0], run.batch_id, "beta", scene)
    deadline = time.monotonic() + 60
    while not isinstance(opening._pending, _module("transfers").Transfer):  # the files are on their way
        assert opening.step() and time.monotonic() < deadline, opening.message
        time.sleep(0.01)
    transfer = opening._pending
    opening.cancel()
    assert transfer.wait_ended(2.0), "the transfer helper outlived the cancel"
    while opening._folder.exists():
        assert time.monotonic() < deadline, "the cancelled opening left its folder"
        time.sleep(0.02)
    assert not opening.step() and opening.state == "cancelled" and opening.result is None
    assert scene.GetNumberOfNodes() == nodes


def test_a_failure_while_making_the_nodes_leaves_the_scene_as_it_was(finished, backend, scene, monkeypatch):
    run = finished[0]
    batch, results = _module("batch"), _module("results")
    batch.open_batch_study(backend[0], run.batch_id, "beta", scene)
    assert _count_items(scene) == 3  # patient, study and the lesions' folder: what is counted below
    nodes, items = scene.GetNumberOfNodes(), _count_items(scene)
    original = results.set_axis

    def failing(line, lesion, axis, name, color):
        if lesion["id"] == 2:
            raise RuntimeError("out of memory")
        original(line, lesion, axis, name, color)

    monkeypatch.setattr(results, "set_axis", failing)
    with pytest.raises(RuntimeError, match="out of memory"):
        batch.open_batch_study(backend[0], run.batch_id, "alpha", scene)
    assert scene.GetNumberOfNodes() == nodes and _count_items(scene) == items


def _count_items(scene) -> int:
    """Patient, study and folder items (slicer-core keeps a removed node's item; the application does not)."""
    import vtk

    ids = vtk.vtkIdList()
    hierarchy = _module("hierarchy").subject_hierarchy(scene)
    hierarchy.GetItemChildren(hierarchy.GetSceneItemID(), ids, True)
    return sum(bool(hierarchy.GetItemLevel(ids.GetId(n))) for n in range(ids.GetNumberOfIds()))


def test_a_backend_that_is_down_gives_a_clear_error(scene, tmp_path, logic):
    batch, client_module = _module("batch"), _module("client")
    down = client_module.BackendClient("http://127.0.0.1:9", TOKEN, timeout=2)
    nodes = scene.GetNumberOfNodes()
    run = batch.BatchRun(down, str(tmp_path), str(tmp_path / "out"))
    with pytest.raises(client_module.BackendError, match="not reachable.*start it"):
        run.wait(30)
    assert run.state == "failed" and "not reachable" in run.summary() and run.batch_id is None
    with pytest.raises(client_module.BackendError, match="not reachable"):
        batch.open_batch_study(down, "0" * 32, "alpha", scene)
    assert scene.GetNumberOfNodes() == nodes


def test_bad_folders_are_refused_before_anything_runs(backend, folder, tmp_path, finished):
    batch, client_module = _module("batch"), _module("client")
    with pytest.raises(ValueError, match="choose the output folder"):
        _start(backend, folder, " ")
    with pytest.raises(client_module.BackendError, match="422.*not a folder on the backend's machine"):
        _start(backend, tmp_path / "missing", tmp_path / "out").wait(30)
    refused = _start(backend, folder, finished[0].status["output_dir"])
    _drive(refused, 30)  # as the GUI sees it: polls end with the backend's answer
    assert refused.state == "failed" and "resume that run or choose an empty folder" in refused.summary()
    with pytest.raises(client_module.BackendError, match="resume that run or choose an empty folder"):
        refused.wait(1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(client_module.BackendError, match="the batch failed: .*no CT \\+ PET study"):
        _start(backend, tmp_path / "empty", tmp_path / "out").wait(60)
    assert batch.FINAL_STATES == ("done", "failed", "cancelled")


def test_resume_keeps_the_finished_studies_and_they_open(backend, folder, finished, scene):
    run = _start(backend, folder, finished[0].status["output_dir"], resume=True)
    status = run.wait(120)
    assert {s["state"] for s in status["studies"]} == {"kept"}
    assert [openable for _, openable, _ in run.rows()] == [True, True]
    assert _module("batch").open_batch_study(backend[0], run.batch_id, "beta", scene).result.report["lesions"]


def test_cancel_stops_the_batch_and_keeps_what_it_finished(backend, folder, tmp_path, scene):
    run_module = _module("run")
    run = _start(backend, folder, tmp_path / "out")
    deadline = time.monotonic() + 60
    while not run.rows() or run._requests:  # studies found: the cancel lands mid-batch, not in discovery
        run.poll()
        time.sleep(0.02)
        assert time.monotonic() < deadline, run.status
    run.cancel()
    assert run.cancelling and run.summary().startswith("Cancelling")
    run.cancel()  # a second click sends nothing more
    assert len(run._requests) == 1
    with pytest.raises(run_module.RunCancelled, match="cancel"):
        run.wait(120)
    assert run.state == "cancelled"
    unfinished = [study for study, openable, _ in run.rows() if not openable]
    assert unfinished, "a cancelled batch finished every study"
    nodes = scene.GetNumberOfNodes()
    with pytest.raises(_module("client").BackendError, match="not finished"):
        _module("batch").open_batch_study(backend[0], run.batch_id, unfinished[0], scene)
    assert scene.GetNumberOfNodes() == nodes
    assert run.poll()["state"] == "cancelled" and not run._requests  # nothing more is asked


def test_a_batch_the_backend_forgot_ends_as_failed(backend, folder, tmp_path):
    run = _start(backend, folder, tmp_path / "out")
    while run.batch_id is None:
        run.poll()
        time.sleep(0.02)
    real, run.batch_id = run.batch_id, "0" * 32  # as after a backend restart
    try:
        with pytest.raises(_module("client").BackendError, match="no longer knows this batch.*Resume"):
            run.wait(60)
    finally:
        backend[0].cancel_batch(real)


def test_the_ui_table_has_the_logics_columns(logic):
    ui = ET.parse(REPO / "AttUMambaSeg" / "Resources" / "UI" / "AttUMambaSeg.ui").getroot()
    table = next(w for w in ui.iter("widget") if w.get("name") == "batchTableWidget")
    assert tuple(c.findtext("property/string") for c in table.findall("column")) == _module("batch").COLUMNS


def test_a_backend_that_stops_answering_shows_in_the_summary_and_polling_goes_on(backend, folder, tmp_path):
    run = _start(backend, folder, tmp_path / "out")
    client, run.client = run.client, _module("client").BackendClient("http://127.0.0.1:9", TOKEN, timeout=2)
    deadline = time.monotonic() + 30
    while run.error is None:
        run.poll()
        assert time.monotonic() < deadline, "the failed request was never noticed"
        time.sleep(0.02)
    assert not run.finished and "no answer from the backend" in run.summary() and "not reachable" in run.summary()
    run.client = client  # the network is back
    run.cancel()
    with pytest.raises(_module("run").RunCancelled):
        run.wait(120)
    assert run.error is None and "no answer" not in run.summary()


def test_making_a_batch_returns_at_once_while_the_backend_is_slow(logic, tmp_path):
    """The submission goes in the background: a backend that takes its time (here: never answers)
    does not hold the GUI thread, and a cancel clicked meanwhile is kept for when it answers."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        slow = _module("client").BackendClient(f"http://127.0.0.1:{silent.getsockname()[1]}", TOKEN, timeout=30)
        started = time.monotonic()
        run = _module("batch").BatchRun(slow, str(tmp_path), str(tmp_path / "out"))
        assert time.monotonic() - started < 0.5, "making a BatchRun waited for the backend"
        polled = time.monotonic()
        assert run.poll()["state"] == "submitting" and time.monotonic() - polled < 0.1
        assert not run.finished and run.batch_id is None and run.summary().startswith("Submitting")
        run.cancel()
        assert run.cancelling and not run._requests  # nothing to cancel on the backend yet
