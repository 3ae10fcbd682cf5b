"""The Response section's logic on slicer-core with the real backend (issue 18, item 6): two results ->
labelmaps sent -> /v1/responses -> table, categories, reference ROIs, the follow-up under the registration."""

from __future__ import annotations

import importlib
import threading
import time

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import handmade_labels
from mrml_helpers import load_volume

LIVER_LPS = (10.0, -20.0, 5.0)          # inside the tiny study's 10 cm cube
BLOOD_POOL_LPS = (-10.0, 12.0, 0.0)


def _module(name: str):
    return importlib.import_module(f"AttUMambaSegLib.logic.{name}")


@pytest.fixture
def follow_up_result(handmade, client, scene, tmp_path):
    """The same patient again as a second study: its own CT/PET nodes, lesion 3 gone, lesion 1 halved."""
    ct_file, pet_file = tmp_path / "ct.nrrd", tmp_path / "pet.nrrd"
    ct, pet = load_volume(scene, ct_file, "CT follow-up"), load_volume(scene, pet_file, "PET follow-up")
    labels = sitk.GetArrayFromImage(handmade.image)
    labels[labels == 3] = 0
    labels[:, :, 11:][labels[:, :, 11:] == 1] = 0
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(handmade.image)
    sitk.WriteImage(image, str(tmp_path / "follow_up.nrrd"), useCompression=True)
    study = client.upload_study(ct_file, pet_file)["study_id"]
    report = client.measure(study, tmp_path / "follow_up.nrrd")
    return _module("results").build_result(scene, ct, tmp_path / "follow_up.nrrd", report, pet_node=pet,
                                           study_id=study, name="follow-up lesions")


def _assess(client, baseline, follow_up, **options):
    return _module("response").ResponseAssessment(client, baseline.segmentation if hasattr(baseline, "segmentation")
                                                  else baseline, follow_up.segmentation, deformable=False, **options)


def _first_reader() -> dict:
    return {"liver": {"baseline": list(LIVER_LPS)}, "blood_pool": {"follow_up": list(BLOOD_POOL_LPS)},
            "min_new_lesion_ml": 0}


def test_a_response_from_two_results_is_built_into_the_scene(handmade_result, follow_up_result, client, scene):
    result = _assess(client, handmade_result, follow_up_result, reader=_first_reader()).wait()
    scene_ = _module("response_scene")
    reader_ = _module("response_reader")
    response = result.response
    rows = _module("tables").table_rows(result.table)
    assert len(rows) == len(response["lesions"]) >= 3
    kinds = {row["baseline_ids"]: row["kind"] for row in rows}
    assert kinds["3"] == "disappeared" and kinds["1"] == "matched"
    one = next(row for row in rows if row["baseline_ids"] == "1")
    assert one["follow_up_volume_ml"] < one["baseline_volume_ml"] and one["volume_change_pct"] < 0
    systems = [line[0] for line in scene_.categories(response)]
    assert systems[:2] == ["RECIST 1.1", "PERCIST 1.0"] and len(systems) == 3
    assert scene_.categories(response)[0][1] == response["categories"]["recist"]["category"]

    liver = result.references[("liver", "baseline")]
    centre = [0.0, 0.0, 0.0]
    liver.GetCenter(centre)
    assert np.allclose(centre, (-LIVER_LPS[0], -LIVER_LPS[1], LIVER_LPS[2]))   # LPS -> RAS: x and y flip
    reported = response["references"]["baseline"]["liver"]
    assert reported["how"] == "placed by the reader" and np.allclose(reported["centre_lps_mm"], LIVER_LPS)
    assert np.allclose(reader_.reference_centres_lps(result)[("blood_pool", "follow_up")], BLOOD_POOL_LPS)
    assert result.references[("blood_pool", "follow_up")].GetTransformNodeID() == result.transform.GetID()
    follow_up = follow_up_result.segmentation
    for node in (follow_up, follow_up.GetNodeReference("AttUMambaSeg.CT"), follow_up.GetNodeReference("AttUMambaSeg.PET")):
        assert node.GetTransformNodeID() == result.transform.GetID()
    assert handmade_result.segmentation.GetTransformNodeID() is None
    # identical anatomy: the registration is (close to) the identity, and a row centres on its lesion
    focus = reader_.group_focus(result, one["group"])
    expected = _module("lesion_view").lesion_focus_ras(handmade_result.report, 1)
    assert np.allclose(focus, expected, atol=2.0)
    assert _module("response_scene").ResponseResult.of(result.table).response == response


def test_building_a_response_is_one_batch_that_keeps_the_users_place_node(handmade_result, follow_up_result,
                                                                          client, scene):
    from scene_watch import SceneWatch

    watch = SceneWatch(scene)   # the user's own markups list is active, the mouse in "ViewTransform"
    try:
        result = _assess(client, handmade_result, follow_up_result, reader=_first_reader()).wait()
        assert len(result.references) == 4 and (watch.batches_started, watch.batches_ended) == (1, 1)
        assert [cls for cls, _ in watch.added].count("vtkMRMLMarkupsROINode") == 4
        assert all(inside for _, inside in watch.added), "a node was added outside the batch"
        assert watch.users_choices_kept()
    finally:
        watch.close()


def test_a_dragged_reference_and_an_unchecked_target_reassess(handmade_result, follow_up_result, client, scene):
    scene_ = _module("response_scene")
    reader_ = _module("response_reader")
    first = _assess(client, handmade_result, follow_up_result, reader=_first_reader()).wait()
    targets = first.target_ids()
    assert len(targets) >= 2
    nodes = scene.GetNumberOfNodes()
    moved_lps = (12.0, -15.0, 8.0)
    first.references[("liver", "baseline")].SetCenter(-moved_lps[0], -moved_lps[1], moved_lps[2])
    reader = reader_.reader_choices(first, targets=targets[1:])
    assert reader["targets"] == sorted(targets[1:])
    assert np.allclose(reader["liver"]["baseline"], moved_lps)
    assert "baseline" not in reader["blood_pool"]            # never found, never dragged: not sent
    again = _assess(client, handmade_result, follow_up_result, reader=reader, previous=first).wait()
    assert again.table is first.table and scene.GetNumberOfNodes() == nodes   # refreshed in place
    response = again.response
    assert [t["baseline_id"] for t in response["categories"]["recist"]["targets"]] == sorted(targets[1:])
    assert np.allclose(response["references"]["baseline"]["liver"]["centre_lps_mm"], moved_lps)
    assert "reused from an earlier assessment" in response["registration"]["notes"]
    rows = _module("tables").table_rows(again.table)
    assert sum(row["target"] == "yes" for row in rows) == len(targets) - 1


class GatedClient:
    """The real client whose response polls wait until the test opens the gate: a slow backend."""

    def __init__(self, client):
        self.client, self.gate, self.polls = client, threading.Event(), 0

    def __getattr__(self, name):
        return getattr(self.client, name)

    def response(self, response_id):
        self.polls += 1
        assert self.gate.wait(60), "the test never opened the gate"
        return self.client.response(response_id)


def test_steps_are_fast_and_cancel_leaves_the_scene_as_it_was(handmade_result, follow_up_result, client, scene):
    nodes = scene.GetNumberOfNodes()
    study = follow_up_result.segmentation.GetAttribute("AttUMambaSeg.StudyID")
    gated = GatedClient(client)
    assessment = _assess(gated, handmade_result, follow_up_result, poll_interval_s=0.01)
    deadline = time.monotonic() + 60
    while gated.polls == 0:                       # labelmaps sent, assessment submitted, first poll waiting
        started = time.monotonic()
        assert assessment.step()
        assert time.monotonic() - started < 0.5
        assert time.monotonic() < deadline
        time.sleep(0.02)
    for _ in range(5):
        started = time.monotonic()
        assert assessment.step()
        assert time.monotonic() - started < 0.5
    response_id = assessment.response_id
    assessment.cancel()
    gated.gate.set()
    assert not assessment.step() and assessment.state == "cancelled"
    with pytest.raises(_module("run").RunCancelled, match="unchanged"):
        assessment.wait()
    assert scene.GetNumberOfNodes() == nodes
    assert follow_up_result.segmentation.GetTransformNodeID() is None
    assert follow_up_result.segmentation.GetAttribute("AttUMambaSeg.StudyID") == study
    deadline = time.monotonic() + 60
    while client.response(response_id)["state"] not in ("cancelled", "done"):   # the backend was told
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_study_the_backend_forgot_is_uploaded_again(handmade_result, follow_up_result, client):
    handmade_result.segmentation.SetAttribute("AttUMambaSeg.StudyID", "0" * 32)
    result = _assess(client, handmade_result, follow_up_result).wait()
    assert len(result.response["lesions"]) >= 3
    assert handmade_result.segmentation.GetAttribute("AttUMambaSeg.StudyID") not in ("0" * 32, None)


def test_errors_give_one_clear_message(handmade_result, follow_up_result, scene, logic):
    from AttUMambaSegLib.logic.client import BackendClient, BackendError

    down = BackendClient("http://127.0.0.1:9", "token")
    nodes = scene.GetNumberOfNodes()
    with pytest.raises(BackendError, match="not reachable"):
        _assess(down, handmade_result, follow_up_result).wait()
    assert scene.GetNumberOfNodes() == nodes
    drawn = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "drawn by hand")
    with pytest.raises(ValueError, match="not made by AttUMambaSeg"):
        _module("response").ResponseAssessment(down, drawn, follow_up_result.segmentation)
    with pytest.raises(ValueError, match="same result"):
        _module("response").ResponseAssessment(down, follow_up_result.segmentation, follow_up_result.segmentation)


def test_the_watch_waits_for_the_readers_changes_to_settle(handmade_result, follow_up_result, client):
    from mrml_helpers import edit_segment

    result = _assess(client, handmade_result, follow_up_result, reader=_first_reader()).wait()
    woken = []
    watch = _module("response_reader").ReaderWatch(result, quiet_s=0.2, on_change=lambda: woken.append(1))
    assert not watch.due()
    result.references[("liver", "follow_up")].SetCenter(1.0, 2.0, 3.0)     # a drag
    assert woken and not watch.due()                                        # not settled yet
    time.sleep(0.25)
    assert watch.due() and not watch.due()                                  # once
    edit_segment(follow_up_result.segmentation, "Lesion 2", lambda voxels, extent: voxels[:2].fill(0))
    time.sleep(0.25)
    assert watch.due()
    watch.stop()
    result.references[("liver", "follow_up")].SetCenter(4.0, 2.0, 3.0)
    time.sleep(0.25)
    assert not watch.due()
