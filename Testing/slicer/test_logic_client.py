"""The Slicer-side backend client (standard library only) against the real service on loopback."""

from __future__ import annotations

import importlib

import pytest
import SimpleITK as sitk
from loopback import tiny_model_backend

from attumamba.server import Limits

TOKEN = "slicer-client-token"


@pytest.fixture(scope="module")
def backend(tmp_path_factory, logic):
    with tiny_model_backend(tmp_path_factory.mktemp("models"), TOKEN, Limits()) as url:
        yield url


def test_the_whole_api_from_the_standard_library(backend, study_files, tmp_path, logic):
    client_module = importlib.import_module("AttUMambaSegLib.logic.client")
    client = client_module.BackendClient(backend, TOKEN)
    assert client.health()["status"] == "ok"
    assert "tiny" in [m["name"] for m in client.models()]
    study = client.upload_study(*study_files, meta={"source": "test"})
    job = client.submit(study["study_id"], "tiny", options={"reference": "ct"})
    seen = []
    status = client.wait(job["job_id"], poll_s=0.05, on_status=seen.append)
    assert status["state"] == "done" and seen[-1]["progress"] == 1.0
    labelmap = client.download_labelmap(job["job_id"], tmp_path / "lesions.nrrd")
    report = client.lesions(job["job_id"])
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(labelmap))).max() == report["totals"]["n_lesions"]
    assert not (tmp_path / "lesions.nrrd.part").exists()

    edited = sitk.Image(sitk.ReadImage(str(study_files[0])).GetSize(), sitk.sitkUInt8)
    edited.CopyInformation(sitk.ReadImage(str(study_files[0])))
    edited[5:15, 5:15, 5:15] = 1
    sitk.WriteImage(edited, str(tmp_path / "edited.nrrd"))
    measured = client.measure(study["study_id"], tmp_path / "edited.nrrd")
    assert measured["lesions"][0]["voxels"] == 1000


def test_errors_are_messages_for_the_user(backend, study_files, tmp_path, logic):
    client_module = importlib.import_module("AttUMambaSegLib.logic.client")
    with pytest.raises(client_module.BackendError, match="refused the token"):
        client_module.BackendClient(backend, "wrong").models()
    with pytest.raises(client_module.BackendError, match="not reachable"):
        client_module.BackendClient("http://127.0.0.1:9", TOKEN, timeout=2).health()
    client = client_module.BackendClient(backend, TOKEN)
    with pytest.raises(client_module.BackendError, match="422.*overlap") as error:
        far = sitk.ReadImage(str(study_files[1]))
        far.SetOrigin((4000.0, 0.0, 0.0))
        sitk.WriteImage(far, str(tmp_path / "far.nrrd"))
        client.upload_study(study_files[0], tmp_path / "far.nrrd")
    assert error.value.status == 422
    with pytest.raises(client_module.BackendError, match="cannot read the backend token"):
        client_module.BackendClient.from_token_file(backend, tmp_path / "missing-token")
