"""Response assessment through the HTTP service (issue 18, item 6): two stored studies and their
finished jobs → POST /v1/responses → the categories, with refusals for what is missing."""

from __future__ import annotations

import time

import httpx
import pytest
from loopback import tiny_model_service
from loopback import wait_for_job as wait
from test_server_http import upload
from tiny_model import small_study

from attumamba.server import Limits

TOKEN = "responses-token-0123456789abcdef"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    limits = Limits(max_upload_bytes=8 << 20, max_studies_bytes=64 << 20)
    with tiny_model_service(tmp_path_factory.mktemp("models"), TOKEN, limits) as client:
        yield client


@pytest.fixture(scope="module")
def segmented(server):
    """Two time points, each uploaded and segmented by the tiny model: {when: (study_id, job_id)}."""
    found = {}
    for when, seed in (("baseline", 0), ("follow_up", 1)):
        study = upload(server, *small_study(seed)).json()["study_id"]
        job = server.post("/v1/jobs", json={"study_id": study, "model": "tiny"}).json()["job_id"]
        assert wait(server, job)["state"] == "done"
        found[when] = (study, job)
    return found


def body(segmented, **extra) -> dict:
    return {when: {"study_id": study, "job_id": job} for when, (study, job) in segmented.items()} | extra


def wait_response(client, response_id, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/v1/responses/{response_id}").json()
        if status["state"] in ("done", "failed", "cancelled"):
            return status
        time.sleep(0.1)
    raise AssertionError(f"response {response_id} stuck: {status}")


def test_a_response_from_two_segmented_studies(server, segmented):
    submitted = server.post("/v1/responses", json=body(segmented, deformable=False, reader={"min_new_lesion_ml": 0}))
    assert submitted.status_code == 202, submitted.text
    status = wait_response(server, submitted.json()["response_id"])
    assert status["state"] == "done", status
    response = status["response"]
    assert set(response["categories"]) == {"recist", "percist", "deauville"}
    assert response["categories"]["recist"]["category"] in ("CR", "PR", "SD", "PD", "NE")
    assert response["registration"]["kind"] == "rigid"
    # a 10 cm cube has no lungs: the reference regions say why they are missing
    assert response["references"]["baseline"]["liver"].startswith("not available: no right lung")
    assert sum(response["matching"]["counts"].values()) == len(response["lesions"])


def test_missing_or_unfinished_inputs_are_refused_at_once(server, segmented):
    wrong = body(segmented)
    wrong["follow_up"]["job_id"] = "nope"
    assert server.post("/v1/responses", json=wrong).status_code == 404
    swapped = body(segmented)
    swapped["follow_up"]["study_id"] = segmented["baseline"][0]
    answer = server.post("/v1/responses", json=swapped)
    assert answer.status_code == 422 and "not the follow_up study" in answer.json()["detail"]
    bad_reader = server.post("/v1/responses", json=body(segmented, reader={"targetz": [1]}))
    assert bad_reader.status_code == 422 and "targetz" in bad_reader.json()["detail"]
    assert server.get("/v1/responses/unknown").status_code == 404
    assert httpx.post(server.base_url.join("/v1/responses"), json=body(segmented)).status_code == 401


def test_a_response_can_be_cancelled(server, segmented, monkeypatch):
    """A cancel that arrives while the assessment works ends it as cancelled, with no response, and
    frees its studies. The measuring step is held until the cancel is in, so the test cannot race."""
    import threading

    import attumamba.server.responses as responses

    entered, release = threading.Event(), threading.Event()
    real = responses.measured

    def held(*args, **kwargs):
        entered.set()
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(responses, "measured", held)
    response_id = server.post("/v1/responses", json=body(segmented)).json()["response_id"]
    assert entered.wait(30), "the assessment never started"
    assert server.get(f"/v1/responses/{response_id}").json()["state"] == "running"
    assert server.delete(f"/v1/responses/{response_id}").status_code == 200
    release.set()
    status = wait_response(server, response_id)
    assert status["state"] == "cancelled" and status["response"] is None
    monkeypatch.setattr(responses, "measured", real)
    # the studies were unpinned: the next assessment runs
    again = server.post("/v1/responses", json=body(segmented, deformable=False)).json()["response_id"]
    assert wait_response(server, again)["state"] == "done"


# --- labelmaps sent by the client (edited segments), reused registrations, the transform ------------------

def _handmade(reference, lesions=(1, 2, 3)):
    """Up to three lesions of known shape on the CT grid: a box (1), a ball (2), a small cube (3)."""
    import numpy as np
    import SimpleITK as sitk

    array = np.zeros(reference.GetSize()[::-1], np.uint16)
    k, j, i = np.indices(array.shape)
    shapes = {1: (k >= 5) & (k < 11) & (j >= 5) & (j < 13) & (i >= 5) & (i < 17),
              2: (k - 22) ** 2 + (j - 24) ** 2 + (i - 24) ** 2 <= 36,
              3: (k >= 30) & (k < 33) & (j >= 8) & (j < 11) & (i >= 30) & (i < 33)}
    for value in lesions:
        array[shapes[value]] = value
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


@pytest.fixture(scope="module")
def same_anatomy(server):
    """One patient's study uploaded twice (identical CT: the registration is the identity), with
    hand-made labelmaps sent for each: lesion 3 is gone at the follow-up. {when: (study_id, labelmap_id)}"""
    from attumamba.server.uploads import image_bytes

    ct, pet = small_study(0)
    found = {}
    for when, lesions in (("baseline", (1, 2, 3)), ("follow_up", (1, 2))):
        study = upload(server, ct, pet).json()["study_id"]
        sent = server.post(f"/v1/studies/{study}/labelmaps",
                           files={"labelmap": ("edited.nrrd", image_bytes(_handmade(ct, lesions)))})
        assert sent.status_code == 200, sent.text
        assert sent.json()["study_id"] == study
        assert sorted(lesion["id"] for lesion in sent.json()["report"]["lesions"]) == list(lesions)
        found[when] = (study, sent.json()["labelmap_id"])
    return found


def labelmap_body(found, **extra) -> dict:
    return {when: {"study_id": study, "labelmap_id": labelmap} for when, (study, labelmap) in found.items()} | extra


def test_sent_labelmaps_are_assessed_instead_of_a_jobs(server, same_anatomy):
    submitted = server.post("/v1/responses", json=labelmap_body(same_anatomy, deformable=False,
                                                                reader={"min_new_lesion_ml": 0}))
    assert submitted.status_code == 202, submitted.text
    status = wait_response(server, submitted.json()["response_id"])
    assert status["state"] == "done", status
    assert status["labelmaps"] == {when: labelmap for when, (_, labelmap) in same_anatomy.items()}
    assert status["jobs"] == {}
    response = status["response"]
    assert response["matching"]["counts"]["disappeared"] == 1
    kinds = {tuple(row["baseline_ids"]): row["kind"] for row in response["lesions"]}
    assert kinds[(3,)] == "disappeared" and kinds[(1,)] != "disappeared" and kinds[(2,)] != "disappeared"
    assert f"labelmap {same_anatomy['follow_up'][1]}" in response["follow_up"]


def test_a_job_and_a_sent_labelmap_mix(server, segmented, same_anatomy):
    mixed = body(segmented, deformable=False)
    mixed["follow_up"] = {"study_id": same_anatomy["follow_up"][0], "labelmap_id": same_anatomy["follow_up"][1]}
    status = wait_response(server, server.post("/v1/responses", json=mixed).json()["response_id"])
    assert status["state"] == "done", status
    assert set(status["jobs"]) == {"baseline"} and set(status["labelmaps"]) == {"follow_up"}


def test_labelmap_sources_are_checked(server, same_anatomy):
    (study, labelmap), (other_study, _) = same_anatomy["baseline"], same_anatomy["follow_up"]
    both = labelmap_body(same_anatomy)
    both["baseline"]["job_id"] = "x"
    answer = server.post("/v1/responses", json=both)
    assert answer.status_code == 422 and "exactly one of job_id and labelmap_id" in answer.json()["detail"]
    neither = labelmap_body(same_anatomy)
    del neither["baseline"]["labelmap_id"]
    assert "exactly one" in server.post("/v1/responses", json=neither).json()["detail"]
    unknown = labelmap_body(same_anatomy)
    unknown["baseline"]["labelmap_id"] = "0" * 32
    answer = server.post("/v1/responses", json=unknown)
    assert answer.status_code == 404 and "send it again" in answer.json()["detail"]
    swapped = labelmap_body(same_anatomy)
    swapped["follow_up"]["labelmap_id"] = labelmap
    answer = server.post("/v1/responses", json=swapped)
    assert answer.status_code == 422 and f"belongs to study {study}" in answer.json()["detail"]
    not_a_volume = server.post(f"/v1/studies/{other_study}/labelmaps", files={"labelmap": ("x.nrrd", b"NRRD0004\n")})
    assert not_a_volume.status_code == 422
    assert server.post(f"/v1/studies/{'0' * 32}/labelmaps", files={"labelmap": ("x.nrrd", b"")}).status_code == 404


def test_the_transform_downloads_and_a_registration_is_reused(server, same_anatomy, segmented, tmp_path):
    import SimpleITK as sitk

    first = wait_response(server, server.post("/v1/responses", json=labelmap_body(
        same_anatomy, deformable=False)).json()["response_id"])
    assert first["state"] == "done", first
    transform = server.get(f"/v1/responses/{first['response_id']}/transform")
    assert transform.status_code == 200
    (tmp_path / "t.h5").write_bytes(transform.content)
    loaded = sitk.ReadTransform(str(tmp_path / "t.h5"))
    moved = loaded.TransformPoint((10.0, -20.0, 5.0))   # identical CTs: (close to) the identity
    assert max(abs(a - b) for a, b in zip(moved, (10.0, -20.0, 5.0))) < 2.0

    again = server.post("/v1/responses", json=labelmap_body(same_anatomy, reuse_registration=first["response_id"],
                                                            reader={"targets": [1]}))
    status = wait_response(server, again.json()["response_id"])
    assert status["state"] == "done", status
    assert "reused from an earlier assessment" in status["response"]["registration"]["notes"]
    assert status["response"]["registration"]["metric_final"] == first["response"]["registration"]["metric_final"]
    assert [t["baseline_id"] for t in status["response"]["categories"]["recist"]["targets"]] == [1]

    other = server.post("/v1/responses", json=body(segmented, reuse_registration=first["response_id"]))
    assert other.status_code == 422 and "same two studies" in other.json()["detail"]
    assert server.get(f"/v1/responses/{'0' * 32}/transform").status_code == 404
