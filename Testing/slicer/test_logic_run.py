"""A whole segmentation run against the real backend on loopback: progress, result, failure, cancel."""

from __future__ import annotations

import importlib
import time

import numpy as np
import pytest
import SimpleITK as sitk


def _module(name: str):
    return importlib.import_module(f"AttUMambaSegLib.logic.{name}")


def _drive(run, timeout_s: float = 120.0) -> list[float]:
    """Call step() as the GUI's timer would; the duration of every call."""
    durations = []
    deadline = time.monotonic() + timeout_s
    while True:
        start = time.monotonic()
        going = run.step()
        durations.append(time.monotonic() - start)
        if not going:
            return durations
        assert time.monotonic() < deadline, f"the run is stuck in {run.stage}"
        time.sleep(0.02)


def test_a_run_makes_the_lesion_nodes_and_reports_progress(client, study_nodes, scene, logic):
    ct, pet, ct_file, _ = study_nodes
    seen = []
    run = _module("run").SegmentationRun(client, scene, ct, pet, model="tiny", poll_interval_s=0.05,
                                         on_progress=lambda *update: seen.append(update))
    durations = _drive(run)
    assert run.state == "done", run.message
    assert max(durations) < 1.0, "step() waited for the backend"  # inference alone takes seconds here

    stages = [stage for stage, _, _ in seen]
    assert list(dict.fromkeys(stages)) == ["export", "upload", "submit", "segment", "download", "build", "done"]
    progress = [value for _, value, _ in seen]
    assert progress == sorted(progress) and progress[-1] == 1.0
    shares = {stage: value for stage, value, message in seen if message.endswith("(100%)")}  # files in a helper
    assert shares == {"upload": _module("run").STAGE_START["submit"], "download": _module("run").STAGE_START["build"]}

    result = run.result
    assert result.segmentation.GetSegmentation().GetNumberOfSegments() == 1  # the biased model: all lesion
    lesion = result.report["lesions"][0]
    assert lesion["voxels"] == 40 ** 3 and lesion["segment"] == "Lesion 1"
    assert result.study_id == run.study_id
    merged, _ = _module("segments").export_labelmap(
        result.segmentation, _module("segments").label_values(result.segmentation.GetSegmentation()))
    assert np.array_equal(merged, np.ones_like(sitk.GetArrayFromImage(sitk.ReadImage(str(ct_file))), np.uint16))
    assert sorted(result.lines) == [(1, "long"), (1, "short")]
    _assert_removed_soon(run._folder)


def _assert_removed_soon(folder) -> None:
    deadline = time.monotonic() + 10
    while folder is not None and folder.exists():
        assert time.monotonic() < deadline, f"the run's temporary folder {folder} was left behind"
        time.sleep(0.02)


def test_wait_runs_to_the_end_for_scripts(client, study_nodes, scene, logic):
    ct, pet, _, _ = study_nodes
    result = _module("run").SegmentationRun(client, scene, ct, pet, model="tiny", poll_interval_s=0.05).wait(120)
    assert result.segmentation.GetScene() is scene and len(result.report["lesions"]) == 1


def test_an_unreachable_backend_fails_the_run_and_leaves_the_scene_as_it_was(study_nodes, scene, logic):
    ct, pet, _, _ = study_nodes
    client = _module("client").BackendClient("http://127.0.0.1:9", "token", timeout=2)
    nodes = scene.GetNumberOfNodes()
    seen = []
    run = _module("run").SegmentationRun(client, scene, ct, pet, on_progress=lambda *update: seen.append(update))
    with pytest.raises(_module("client").BackendError, match="not reachable"):
        run.wait(60)
    assert run.state == "failed" and "not reachable" in run.message
    assert seen[-1][0] == "failed"
    assert scene.GetNumberOfNodes() == nodes
    _assert_removed_soon(run._folder)


def test_a_failing_model_fails_the_run_with_the_backends_message(client, study_nodes, scene, logic):
    ct, pet, _, _ = study_nodes
    nodes = scene.GetNumberOfNodes()
    run = _module("run").SegmentationRun(client, scene, ct, pet, model="no-such-model", poll_interval_s=0.05)
    with pytest.raises(_module("client").BackendError) as error:
        run.wait(60)
    assert "no-such-model" in str(error.value)
    assert scene.GetNumberOfNodes() == nodes


def test_cancel_stops_the_run_and_makes_no_nodes(client, study_nodes, scene, logic):
    ct, pet, _, _ = study_nodes
    nodes = scene.GetNumberOfNodes()
    run = _module("run").SegmentationRun(client, scene, ct, pet, model="tiny", poll_interval_s=0.05)
    while run.job_id is None:
        assert run.step(), run.message
        time.sleep(0.01)
    run.cancel()
    assert run.state == "cancelled" and not run.step()
    with pytest.raises(_module("run").RunCancelled):
        run.wait(5)
    deadline = time.monotonic() + 30
    while client.job(run.job_id)["state"] not in ("cancelled", "done", "failed"):
        assert time.monotonic() < deadline, "the backend job was never told to stop"
        time.sleep(0.05)
    assert scene.GetNumberOfNodes() == nodes


def test_a_run_can_replace_an_earlier_result(client, study_nodes, scene, logic):
    ct, pet, _, _ = study_nodes
    first = _module("run").SegmentationRun(client, scene, ct, pet, model="tiny", poll_interval_s=0.05).wait(120)
    nodes = scene.GetNumberOfNodes()
    again = _module("run").SegmentationRun(client, scene, ct, pet, model="tiny", poll_interval_s=0.05,
                                           replace=first.segmentation).wait(120)
    assert again.segmentation is first.segmentation
    assert scene.GetNumberOfNodes() == nodes
