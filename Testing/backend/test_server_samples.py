"""``/v1/samples`` on the real service (loopback): a synthetic PET/CT made by the ``synth`` generator
becomes a stored study whose volumes are the generator's, voxel for voxel; bad choices, unknown
samples, too many at once and cancelling are answered as the other queued routes answer them."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
import SimpleITK as sitk
from loopback import serving

from attumamba.server import Limits, ServerState, create_app, read_image_bytes
from attumamba.server.samples import MAX_WAITING
from attumamba.synth import generate_study

TOKEN = "test-token-samples-0123456789"


@pytest.fixture(scope="module")
def server():
    with serving(create_app(ServerState(token=TOKEN, limits=Limits(max_studies_bytes=512 << 20)))) as url, \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
        yield client


def wait_for_sample(client, sample_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/v1/samples/{sample_id}").json()
        if status["state"] in ("done", "failed", "cancelled"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"sample {sample_id} stuck in {status}")


def test_a_sample_is_the_generators_study_stored_like_an_upload(server):
    answer = server.post("/v1/samples", json={})  # the defaults: compact, mixed, seed 0
    assert answer.status_code == 202, answer.text
    started = answer.json()
    assert started["state"] in ("queued", "running") and started["study"] is None
    assert started["request"] == {"tracer": "mixed", "profile": "compact", "seed": 0, "index": 0}

    seen, status = set(), started
    while status["state"] not in ("done", "failed", "cancelled"):
        status = server.get(f"/v1/samples/{started['sample_id']}").json()
        seen.add(status["stage"])
        time.sleep(0.02)
    assert status["state"] == "done", status
    assert status["progress"] == 1.0 and len(seen) >= 2  # progress was reported on the way
    study = status["study"]
    expected = generate_study(0, 0, tracer="mixed", profile="compact")
    meta = study["meta"]
    assert meta["source"] == "synthetic sample" and meta["tracer"] == expected.tracer
    assert meta["n_lesions"] == len(expected.truth["lesions"]) >= 1
    assert f"with {meta['n_lesions']} lesion" in status["message"]
    assert meta["patient"] == {"sex": expected.dicom_study.patient_sex, "height_m": expected.dicom_study.patient_size_m,
                               "weight_kg": expected.dicom_study.patient_weight_kg}
    for which, image in (("ct", expected.ct), ("pet", expected.suv)):
        volume = server.get(f"/v1/studies/{study['study_id']}/volumes/{which}")
        assert volume.status_code == 200, volume.text
        got = read_image_bytes(volume.content)
        assert got.GetSize() == image.GetSize() and study[which]["size"] == list(image.GetSize())
        assert np.allclose(got.GetOrigin(), image.GetOrigin()) and np.allclose(got.GetSpacing(), image.GetSpacing())
        assert np.array_equal(sitk.GetArrayViewFromImage(got), sitk.GetArrayViewFromImage(image))


@pytest.mark.parametrize(("body", "field"), [
    ({"tracer": "mri"}, "tracer"), ({"profile": "huge"}, "profile"), ({"seed": -1}, "seed"), ({"index": "x"}, "index"),
])
def test_bad_choices_are_refused_with_the_field_named(server, body, field):
    answer = server.post("/v1/samples", json=body)
    assert answer.status_code == 422 and answer.json()["error"] == "invalid request"
    assert field in answer.json()["detail"]


def test_unknown_samples_and_missing_tokens_are_refused(server):
    unknown = server.get("/v1/samples/nosuchsample")
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown sample"
    assert server.delete("/v1/samples/nosuchsample").status_code == 404
    assert httpx.post(f"{server.base_url}/v1/samples", json={}).status_code == 401


def test_too_many_waiting_are_refused_and_cancelled_ones_never_become_studies(server):
    ids = []
    for seed in range(MAX_WAITING + 1):  # one is made, the others wait
        answer = server.post("/v1/samples", json={"seed": 100 + seed})
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["sample_id"])
    refused = server.post("/v1/samples", json={"seed": 99})
    if refused.status_code == 202:  # the first finished already: the queue had room again
        ids.append(refused.json()["sample_id"])
        refused = server.post("/v1/samples", json={"seed": 98})
    assert refused.status_code == 429 and refused.json()["error"] == "too many samples"
    assert refused.headers["Retry-After"] == "10"
    for sample_id in ids:
        cancelled = server.delete(f"/v1/samples/{sample_id}")
        assert cancelled.status_code == 200
    finals = [wait_for_sample(server, sample_id) for sample_id in ids]
    assert all(final["state"] in ("cancelled", "done") for final in finals)
    assert any(final["state"] == "cancelled" and final["study"] is None for final in finals)
    assert server.post("/v1/samples", json={"seed": 97}).status_code == 202  # room again
