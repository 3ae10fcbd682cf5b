"""Response assessment through the HTTP service (issue 18, item 6): two stored studies and their
finished jobs → POST /v1/responses → the categories, with refusals for what is missing."""

from __future__ import annotations

import os
import time

import httpx
import pytest
from loopback import serving
from test_server_http import upload, wait
from tiny_model import make_tiny_package, small_study

from attumamba.server import Limits, ServerState, create_app

TOKEN = "responses-token-0123456789abcdef"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    make_tiny_package(models / "tiny")
    saved = os.environ.get("ATTUMAMBA_MODELS")
    os.environ["ATTUMAMBA_MODELS"] = str(models)
    app = create_app(ServerState(token=TOKEN, limits=Limits(max_upload_bytes=8 << 20, max_studies_bytes=64 << 20)))
    with serving(app) as url, httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"},
                                           timeout=60) as client:
        yield client
    if saved is None:
        os.environ.pop("ATTUMAMBA_MODELS", None)
    else:
        os.environ["ATTUMAMBA_MODELS"] = saved


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


def test_a_response_can_be_cancelled(server, segmented):
    response_id = server.post("/v1/responses", json=body(segmented)).json()["response_id"]
    assert server.delete(f"/v1/responses/{response_id}").status_code == 200
    status = wait_response(server, response_id)
    assert status["state"] in ("cancelled", "done")   # done only if it finished before the cancel arrived
    if status["state"] == "cancelled":
        assert status["response"] is None
    # the studies were unpinned: the next assessment runs
    again = server.post("/v1/responses", json=body(segmented, deformable=False)).json()["response_id"]
    assert wait_response(server, again)["state"] == "done"
