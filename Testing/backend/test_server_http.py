"""The HTTP service on a real loopback socket (uvicorn in a thread): auth, the segment round trip,
re-measure, cancel, concurrent jobs, and malformed uploads answered with 4xx while it keeps serving."""

from __future__ import annotations

import stat

import httpx
import numpy as np
import pytest
import SimpleITK as sitk
from loopback import tiny_model_service, wait_for_job
from tiny_model import small_study

from attumamba.errors import InputError
from attumamba.server import Limits, image_bytes, read_image_bytes
from attumamba.server.auth import check_bind, token_matches, write_token_file

TOKEN = "test-token-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    limits = Limits(max_upload_bytes=8 << 20, max_voxels=2_000_000, max_studies_bytes=64 << 20)
    with tiny_model_service(tmp_path_factory.mktemp("models"), TOKEN, limits) as client:
        yield client


def upload(client, ct, pet, names=("ct.nrrd", "pet.nrrd")):
    files = {"ct": (names[0], image_bytes(ct)), "pet": (names[1], image_bytes(pet))}
    return client.post("/v1/studies", files=files, data={"meta": '{"patient": "anon"}'})


wait = wait_for_job


def big_study():
    """PET 40×60×60 at 5 mm: 27 tiles, slow enough with TTA to be cancelled while running."""
    ct, pet = small_study()
    pet_big = sitk.Resample(pet, [60, 60, 40], sitk.Transform(), sitk.sitkLinear, pet.GetOrigin(), pet.GetSpacing(),
                            pet.GetDirection(), 1.0)
    ct_big = sitk.Resample(ct, [60, 60, 40], sitk.Transform(), sitk.sitkLinear, pet.GetOrigin(), (5.0, 5.0, 5.0),
                           ct.GetDirection(), -1000.0)
    return ct_big, pet_big


def test_health_is_open_and_everything_else_needs_the_token(server):
    health = httpx.get(f"{server.base_url}/v1/health")
    assert health.status_code == 200 and health.json()["status"] == "ok" and "scan" in health.json()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        answer = httpx.get(f"{server.base_url}/v1/models", headers=headers)
        assert answer.status_code == 401 and answer.json()["error"] == "unauthorised"
    assert "tiny" in [m["name"] for m in server.get("/v1/models").json()]
    assert server.get("/openapi.json").json()["info"]["title"] == "AttUMambaSeg backend"


def test_segment_round_trip_and_re_measure_after_an_edit(server):
    ct, pet = small_study()
    study = upload(server, ct, pet)
    assert study.status_code == 200, study.text
    study_id = study.json()["study_id"]
    assert study.json()["meta"] == {"patient": "anon"} and study.json()["ct"]["size"] == list(ct.GetSize())

    job = server.post("/v1/jobs", json={"study_id": study_id, "model": "tiny", "options": {"reference": "ct"}})
    assert job.status_code == 202 and job.json()["state"] in ("queued", "running")
    status = wait(server, job.json()["job_id"])
    assert status["state"] == "done" and status["progress"] == 1.0, status
    assert {"network", "lesion_analysis"} <= set(status["timings"])

    labelmap = read_image_bytes(server.get(f"/v1/jobs/{status['job_id']}/labelmap").content)
    report = server.get(f"/v1/jobs/{status['job_id']}/lesions").json()
    assert labelmap.GetSize() == ct.GetSize() and labelmap.GetOrigin() == pytest.approx(ct.GetOrigin())
    labels = sitk.GetArrayFromImage(labelmap)
    assert labels.max() == report["totals"]["n_lesions"]
    assert [lesion["voxels"] for lesion in report["lesions"]] == [int((labels == n).sum()) for n in
                                                                   range(1, labels.max() + 1)]

    edited = np.zeros(labels.shape, np.uint8)
    edited[10:30, 10:30, 10:30] = 1
    edited_image = sitk.GetImageFromArray(edited)
    edited_image.CopyInformation(ct)
    whole = server.post(f"/v1/studies/{study_id}/measure", files={"labelmap": ("edit.nrrd", image_bytes(edited_image))})
    edited[10:20] = 0
    edited_image = sitk.GetImageFromArray(edited)
    edited_image.CopyInformation(ct)
    half = server.post(f"/v1/studies/{study_id}/measure", files={"labelmap": ("edit.nrrd", image_bytes(edited_image))})
    assert whole.status_code == half.status_code == 200
    assert half.json()["lesions"][0]["volume_ml"] == pytest.approx(whole.json()["lesions"][0]["volume_ml"] / 2)
    assert whole.json()["lesions"][0]["suv_max"] is not None


def test_cancel_a_running_job_and_the_worker_goes_on(server):
    study_id = upload(server, *big_study()).json()["study_id"]
    slow = server.post("/v1/jobs", json={"study_id": study_id, "model": "tiny", "tta": True}).json()
    queued = server.post("/v1/jobs", json={"study_id": study_id, "model": "tiny", "tta": True}).json()
    wait(server, slow["job_id"], until=("running",))
    assert server.delete(f"/v1/jobs/{queued['job_id']}").json()["state"] == "cancelled"
    server.delete(f"/v1/jobs/{slow['job_id']}")
    assert wait(server, slow["job_id"])["state"] == "cancelled"
    assert server.get(f"/v1/jobs/{slow['job_id']}/lesions").status_code == 409
    after = server.post("/v1/jobs", json={"study_id": study_id, "model": "tiny"}).json()
    assert wait(server, after["job_id"])["state"] == "done"


def test_several_jobs_queue_and_all_finish(server):
    study_id = upload(server, *small_study()).json()["study_id"]
    ids = [server.post("/v1/jobs", json={"study_id": study_id, "model": "tiny"}).json()["job_id"] for _ in range(3)]
    reports = [server.get(f"/v1/jobs/{i}/lesions").json() for i in ids if wait(server, i)["state"] == "done"]
    assert len(reports) == 3 and reports[0]["totals"] == reports[1]["totals"] == reports[2]["totals"]


def nrrd_claiming(size: str) -> bytes:
    return (f"NRRD0004\ntype: float\ndimension: 3\nsizes: {size}\nspacings: 1 1 1\nencoding: raw\n"
            "endian: little\n\n").encode() + b"\0" * 64


def test_malformed_uploads_get_4xx_and_the_server_keeps_serving(server):
    ct, pet = small_study()
    flat = sitk.GetImageFromArray(np.zeros((10, 10), np.float32))
    nan_pet = sitk.Image(pet)
    nan_pet[1, 1, 1] = float("nan")
    far_pet = sitk.Image(pet)
    far_pet.SetOrigin((5000.0, 0.0, 0.0))
    bad_requests = {
        "not an image": {"ct": ("ct.nrrd", b"hello, not a volume"), "pet": ("pet.nrrd", image_bytes(pet))},
        "a 2D image": {"ct": ("ct.nrrd", image_bytes(flat)), "pet": ("pet.nrrd", image_bytes(pet))},
        "no suffix": {"ct": ("ct.bin", image_bytes(ct)), "pet": ("pet.nrrd", image_bytes(pet))},
        "NaN voxels": {"ct": ("ct.nrrd", image_bytes(ct)), "pet": ("pet.nrrd", image_bytes(nan_pet))},
        "another place": {"ct": ("ct.nrrd", image_bytes(ct)), "pet": ("pet.nrrd", image_bytes(far_pet))},
        "a huge header": {"ct": ("ct.nrrd", nrrd_claiming("100000 100000 100000")), "pet": ("pet.nrrd", image_bytes(pet))},
        "truncated data": {"ct": ("ct.nrrd", nrrd_claiming("20 20 20")), "pet": ("pet.nrrd", image_bytes(pet))},
        "too large a file": {"ct": ("ct.nrrd", b"\0" * (9 << 20)), "pet": ("pet.nrrd", image_bytes(pet))},
    }
    for name, files in bad_requests.items():
        answer = server.post("/v1/studies", files=files)
        assert 400 <= answer.status_code < 500, (name, answer.status_code, answer.text)
        assert set(answer.json()) == {"error", "detail"} and "Traceback" not in answer.text, name
    assert server.post("/v1/studies", files={"ct": ("ct.nrrd", image_bytes(ct))}).status_code == 422  # no PET
    assert server.post("/v1/jobs", json={"study_id": "nope"}).status_code == 404
    assert server.post("/v1/jobs", json={"model": "tiny"}).status_code == 422
    study_id = upload(server, ct, pet).json()["study_id"]
    assert server.post("/v1/jobs", json={"study_id": study_id, "options": {"colour": "red"}}).status_code == 422
    assert server.post("/v1/jobs", json={"study_id": study_id, "device": "tpu"}).status_code == 422
    assert server.get("/v1/jobs/nope").status_code == 404
    assert httpx.get(f"{server.base_url}/v1/health").status_code == 200


def test_token_file_is_private_and_wide_binds_need_a_chosen_token(tmp_path):
    path = write_token_file("abc", tmp_path / "sub" / "token")
    assert path.read_text().strip() == "abc" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert token_matches("Bearer abc", "abc") and not token_matches("Bearer abd", "abc")
    assert not token_matches(None, "abc") and not token_matches("Basic abc", "abc")
    check_bind("127.0.0.1", False)
    check_bind("::1", False)
    with pytest.raises(InputError, match="ATTUMAMBA_TOKEN"):
        check_bind("0.0.0.0", False)
    check_bind("0.0.0.0", True)
