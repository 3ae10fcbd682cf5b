"""Load sample study on slicer-core against the real backend: the synthetic PET/CT the backend makes
becomes a CT and a PET volume node that the module picks as its inputs, and Segment runs on them
(the backend takes the pair and its network starts); cancelling or a failure adds nothing to the scene."""

from __future__ import annotations

import importlib
import time

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import TOKEN


@pytest.fixture
def sample(logic):
    return importlib.import_module("AttUMambaSegLib.logic.sample")


def _volume_nodes(scene) -> list:
    nodes = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
    return [nodes.GetItemAsObject(n) for n in range(nodes.GetNumberOfItems())]


def test_the_sample_is_loaded_as_the_inputs_and_segments(scene, client, sample):
    from AttUMambaSegLib.logic import inputs, run
    from AttUMambaSegLib.logic.hierarchy import study_item
    from AttUMambaSegLib.logic.volumes import volume_array

    progress = []
    loading = sample.SampleLoading(client, scene, on_progress=lambda *p: progress.append(p), poll_interval_s=0.1)
    loading.wait(timeout_s=300)
    assert loading.state == "done" and progress[-1][0] == "done"
    assert [p[1] for p in progress] == sorted(p[1] for p in progress)  # progress only goes forward
    assert {"generate", "download", "load"} <= {p[0] for p in progress}
    ct, pet = loading.ct, loading.pet
    assert (ct.GetName(), pet.GetName()) == ("Sample synth_0000 CT", "Sample synth_0000 PET")
    assert inputs.preselect(scene) == (ct, pet)
    assert study_item(scene, ct) == study_item(scene, pet) is not None
    meta = loading.study["meta"]
    assert meta["source"] == "synthetic sample" and meta["profile"] == "compact" and meta["n_lesions"] >= 1
    assert loading.message.startswith("Sample synth_0000:") and f"{meta['n_lesions']} lesions" in loading.message
    for node, which in ((ct, "ct"), (pet, "pet")):
        array, _ = volume_array(node)
        assert list(array.shape[::-1]) == loading.study[which]["size"]
    hot = volume_array(pet)[0]
    assert hot.max() > 3.0 and np.median(volume_array(ct)[0]) < -500  # SUV lesions; air around the body

    # Segment takes them: the backend accepts the pair and its network runs (a whole body with the tiny model
    # takes many minutes on a CPU, so the run is cancelled once the network has started).
    stages = []
    segmenting = run.SegmentationRun(client, scene, ct, pet, model="tiny", poll_interval_s=0.1,
                                     on_progress=lambda stage, fraction, message: stages.append((stage, message)))
    deadline = time.monotonic() + 300
    while ("segment", "network") not in stages:
        assert segmenting.step() and time.monotonic() < deadline, (segmenting.message, stages[-3:])
        time.sleep(0.05)
    segmenting.cancel()
    assert segmenting.state == "cancelled" and scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0


def test_a_refused_sample_adds_nothing_and_says_why(scene, lesion_backend, sample):
    from AttUMambaSegLib.logic.client import BackendClient, BackendError

    before = len(_volume_nodes(scene))
    loading = sample.SampleLoading(BackendClient(lesion_backend, "wrong-token"), scene)
    with pytest.raises(BackendError, match="refused the token"):
        loading.wait(timeout_s=60)
    assert loading.state == "failed" and len(_volume_nodes(scene)) == before
    with pytest.raises(ValueError, match="choose a tracer"):
        sample.SampleLoading(BackendClient(lesion_backend, TOKEN), scene, tracer="mri")


def test_cancelling_adds_nothing_and_cancels_on_the_backend(scene, client, sample):
    loading = sample.SampleLoading(client, scene, seed=5, poll_interval_s=0.05)
    while loading.sample_id is None:
        assert loading.step()
    loading.cancel()
    assert loading.state == "cancelled" and loading.message == "cancelled; nothing was added"
    assert not loading.step() and _volume_nodes(scene) == []
    for _ in range(200):  # the cancel goes to the backend from the worker thread
        status = client.sample_status(loading.sample_id)
        if status["state"] in ("cancelled", "done"):
            break
        time.sleep(0.05)
    assert status["state"] == "cancelled" and status["study"] is None


def test_a_failed_load_takes_back_what_it_added(scene, tmp_path, sample):
    ct, _ = sample.synthetic_study()
    sitk.WriteImage(ct, str(tmp_path / "ct.nrrd"))
    (tmp_path / "pet.nrrd").write_bytes(b"not a volume")
    hierarchy_items = scene.GetNumberOfNodes()
    with pytest.raises(RuntimeError):
        sample.add_study_volumes(scene, tmp_path, "Broken")
    assert _volume_nodes(scene) == [] and scene.GetNumberOfNodes() == hierarchy_items


def test_the_self_tests_study_is_named_as_a_users_files(scene, sample):
    """What the module's self-test and the in-Slicer widget test load: "CT" and "PET", picked by name."""
    from AttUMambaSegLib.logic import inputs
    from AttUMambaSegLib.logic.geometry import ras_to_ijk
    from AttUMambaSegLib.logic.volumes import volume_array

    ct, pet = sample.add_synthetic_study(scene)
    assert (ct.GetName(), pet.GetName()) == ("CT", "PET") and ct.GetAttribute("DICOM.Modality") is None
    assert inputs.preselect(scene) == (ct, pet)
    array, ijk_to_ras = volume_array(pet)
    x, y, z = sample.LESION_CENTRE_LPS
    i, j, k = np.rint(ras_to_ijk(ijk_to_ras, (-x, -y, z))).astype(int)
    assert array[k, j, i] == sample.LESION_SUV  # the hot sphere where the self-test looks for it
