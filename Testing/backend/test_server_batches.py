"""Batch runs through the HTTP service on loopback: submit a folder, poll per-study status, open a
finished study (its volumes and labelmap download, it re-measures), resume, cancel, bad requests."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
import SimpleITK as sitk
from loopback import serving
from tiny_model import make_tiny_package, small_study

from attumamba.server import ServerState, create_app, image_bytes, read_image_bytes

TOKEN = "batch-token-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model = make_tiny_package(tmp_path_factory.mktemp("models") / "tiny", bias_lesion=20.0)
    app = create_app(ServerState(token=TOKEN))
    with serving(app) as url, httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"},
                                           timeout=60) as client:
        client.model = str(model)
        yield client


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("studies")
    for name, seed in (("alpha", 0), ("beta", 1)):
        ct, pet = small_study(seed)
        sitk.WriteImage(ct, str(root / f"{name}_ct.nii.gz"))
        sitk.WriteImage(pet, str(root / f"{name}_pet.nii.gz"))
    return root


def wait(client, batch_id, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/v1/batches/{batch_id}").json()
        if status["state"] in ("done", "failed", "cancelled"):
            return status
        time.sleep(0.1)
    raise AssertionError(f"batch {batch_id} stuck: {status}")


def submit(client, folder, out, **extra):
    body = {"input_dir": str(folder), "output_dir": str(out), "model": client.model, "device": "cpu",
            "options": {"min_suv_max": 3.0}, **extra}
    return client.post("/v1/batches", json=body)


def test_a_batch_runs_reports_each_study_and_opens_a_finished_one(server, folder, tmp_path):
    answer = submit(server, folder, tmp_path / "out")
    assert answer.status_code == 202, answer.text
    status = wait(server, answer.json()["batch_id"])
    assert status["state"] == "done" and status["progress"] == 1.0 and status["report_html"]
    assert {s["study_id"]: (s["state"], s["n_lesions"]) for s in status["studies"]} == {"alpha": ("done", 1),
                                                                                       "beta": ("done", 1)}
    batch_id = status["batch_id"]
    opened = server.post(f"/v1/batches/{batch_id}/studies/alpha/open")
    assert opened.status_code == 200, opened.text
    study_id, report = opened.json()["study_id"], opened.json()["report"]
    assert report["totals"]["n_lesions"] == 1
    labels = read_image_bytes(server.get(f"/v1/batches/{batch_id}/studies/alpha/labelmap").content)
    ct = read_image_bytes(server.get(f"/v1/studies/{study_id}/volumes/ct").content)
    pet = read_image_bytes(server.get(f"/v1/studies/{study_id}/volumes/pet").content)
    original_ct, original_pet = small_study(0)
    assert np.array_equal(sitk.GetArrayFromImage(ct), sitk.GetArrayFromImage(original_ct))
    assert np.allclose(sitk.GetArrayFromImage(pet), sitk.GetArrayFromImage(original_pet))
    assert labels.GetSize() == ct.GetSize()

    half = sitk.GetArrayFromImage(labels)
    half[: half.shape[0] // 2] = 0  # the user erases half of the lesion, then re-measures
    edited = sitk.GetImageFromArray(half)
    edited.CopyInformation(labels)
    measured = server.post(f"/v1/studies/{study_id}/measure", files={"labelmap": ("edit.nrrd", image_bytes(edited))})
    assert measured.json()["totals"]["mtv_ml"] == pytest.approx(report["totals"]["mtv_ml"] / 2)

    again = submit(server, folder, tmp_path / "out")
    assert again.status_code == 422 and "resume" in again.json()["detail"]
    resumed = wait(server, submit(server, folder, tmp_path / "out", resume=True).json()["batch_id"])
    assert {s["state"] for s in resumed["studies"]} == {"kept"} and "2 kept" in resumed["message"]


def test_bad_batch_requests_are_4xx_and_unfinished_studies_cannot_be_opened(server, folder, tmp_path):
    assert submit(server, tmp_path / "missing", tmp_path / "out").status_code == 422
    assert submit(server, "relative/dir", tmp_path / "out").status_code == 422
    assert server.get("/v1/batches/nope").status_code == 404
    assert httpx.get(f"{server.base_url}/v1/batches/nope").status_code == 401
    empty = tmp_path / "empty"
    empty.mkdir()
    failed = wait(server, submit(server, empty, tmp_path / "out").json()["batch_id"])
    assert failed["state"] == "failed" and "no CT + PET study" in failed["message"]
    assert server.post(f"/v1/batches/{failed['batch_id']}/studies/alpha/open").status_code == 409


def test_cancelling_a_batch_keeps_what_it_finished(server, folder, tmp_path):
    batch_id = submit(server, folder, tmp_path / "out").json()["batch_id"]
    assert server.delete(f"/v1/batches/{batch_id}").status_code == 200
    status = wait(server, batch_id)
    assert status["state"] == "cancelled"
    finished = [s for s in status["studies"] if s["state"] == "done"]
    assert len(list((tmp_path / "out" / "studies").glob("*/study.json"))) == len(finished) < 2
