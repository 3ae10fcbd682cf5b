"""Everything the service holds, on a real loopback service: one byte budget (--study-cache-mb) for
studies and job results, studies pinned while their jobs wait or run, expired studies and results
that say so, a bounded job queue, and one loaded model shared by jobs and batch runs."""

from __future__ import annotations

import gc
import threading
import time
from contextlib import contextmanager

import httpx
import numpy as np
import psutil
import pytest
import SimpleITK as sitk
from loopback import serving, wait_for_job
from tiny_model import make_tiny_package, small_study

from attumamba.server import Limits, ServerState, create_app, image_bytes

TOKEN = "holdings-token-0123456789abcdef0123456789"
SMALL_STUDY_BYTES = 40 ** 3 * 4 + 20 ** 3 * 4  # CT 40³ + PET 20³, float32


@pytest.fixture
def models(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    make_tiny_package(folder / "tiny")
    monkeypatch.setenv("ATTUMAMBA_MODELS", str(folder))
    return folder


@contextmanager
def service(**limits):
    app = create_app(ServerState(token=TOKEN, limits=Limits(**limits)))
    with serving(app) as url, httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"},
                                           timeout=60) as client:
        yield client


@contextmanager
def device_held(model: str = "tiny"):
    """Keep the CPU busy as a batch study would, so jobs wait (the shared per-device turn)."""
    from attumamba.inference.loaded_models import LOADED_MODELS

    with LOADED_MODELS.using(model, "cpu", False):
        yield


def upload(client, ct, pet):
    files = {"ct": ("ct.nrrd", image_bytes(ct)), "pet": ("pet.nrrd", image_bytes(pet))}
    answer = client.post("/v1/studies", files=files)
    assert answer.status_code == 200, answer.text
    return answer.json()["study_id"]


def submit(client, study_id, **extra):
    return client.post("/v1/jobs", json={"study_id": study_id, "model": "tiny", **extra})


wait = wait_for_job


def fine_ct_study(seed: int, n: int = 160):
    """The small study with its CT at 160³ (16 MiB of float32): memory a held job would show."""
    _, pet = small_study(seed)
    ct = sitk.GetImageFromArray(np.full((n, n, n), 40.0 + seed, np.float32))
    ct.SetSpacing((100 / n,) * 3)
    ct.SetOrigin((-50 + 50 / n,) * 3)
    return ct, pet


def rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


@pytest.mark.slow
def test_study_cache_cap_holds_with_finished_jobs(models):
    cap = 40 << 20
    with service(max_studies_bytes=cap) as client:
        first = upload(client, *fine_ct_study(0))
        first_job = submit(client, first).json()["job_id"]
        assert wait(client, first_job)["state"] == "done"  # the model is loaded from here on
        before = rss()
        jobs = []
        for seed in range(1, 7):  # 6 × 16 MiB studies and their results through a 40 MiB cap
            study_id = upload(client, *fine_ct_study(seed))
            jobs.append(submit(client, study_id).json()["job_id"])
            assert wait(client, jobs[-1])["state"] == "done"
        grown = rss() - before

        # without the cap each finished job kept its study and labelmap: 6 × > 16 MiB
        assert grown < cap + (64 << 20), f"the server grew by {grown >> 20} MiB with a {cap >> 20} MiB cap"
        memory = client.get("/v1/status").json()["memory"]
        assert memory["held_bytes"] <= cap and memory["limit_bytes"] == cap and memory["pinned_bytes"] == 0

        old = client.get(f"/v1/jobs/{jobs[0]}/labelmap")
        assert old.status_code == 410 and old.json()["error"] == "result expired"
        assert "run the job again" in old.json()["detail"] and "--study-cache-mb" in old.json()["detail"]
        assert client.get(f"/v1/jobs/{jobs[0]}/lesions").status_code == 410
        assert client.get(f"/v1/jobs/{jobs[0]}").json()["result"] == "expired"
        assert client.get(f"/v1/jobs/{jobs[-1]}/labelmap").status_code == 200
        assert client.get(f"/v1/jobs/{jobs[-1]}").json()["result"] == "held"
        assert client.get("/v1/health").status_code == 200


def test_evicted_study_says_upload_again(models):
    with service(max_studies_bytes=3 * SMALL_STUDY_BYTES + 1000) as client:
        ct, pet = small_study()
        evicted = upload(client, ct, pet)
        for _ in range(3):
            upload(client, ct, pet)
        volume = client.get(f"/v1/studies/{evicted}/volumes/ct")
        labels = sitk.Image(ct.GetSize(), sitk.sitkUInt8)
        labels.CopyInformation(ct)
        measured = client.post(f"/v1/studies/{evicted}/measure", files={"labelmap": ("l.nrrd", image_bytes(labels))})
        job = submit(client, evicted)
        for answer in (volume, measured, job):  # the module re-uploads on exactly this: a 404
            assert answer.status_code == 404 and answer.json()["error"] == "study expired", answer.text
            assert "upload it again" in answer.json()["detail"] and "--study-cache-mb" in answer.json()["detail"]
        never = client.get("/v1/studies/0123abcd/volumes/ct")
        assert never.status_code == 404 and never.json()["error"] == "unknown study"
        assert "upload it again" in never.json()["detail"]
        again = upload(client, ct, pet)  # what the module does next
        assert client.post(f"/v1/studies/{again}/measure", files={"labelmap": ("l.nrrd", image_bytes(labels))}).json()[
            "totals"]["n_lesions"] == 0
        assert client.get("/v1/status").json()["memory"]["items"] == {"study": 3}


def test_queued_jobs_pin_their_studies(models):
    with service(max_studies_bytes=3 * SMALL_STUDY_BYTES + 1000) as client:
        ct, pet = small_study()
        studies = [upload(client, ct, pet) for _ in range(3)]
        with device_held():
            jobs = [submit(client, study_id).json()["job_id"] for study_id in studies]
            refused = client.post("/v1/studies", files={"ct": ("ct.nrrd", image_bytes(ct)),
                                                        "pet": ("pet.nrrd", image_bytes(pet))})
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "30", refused.text
            assert refused.json()["error"] == "service busy"
            assert "held for queued and running jobs" in refused.json()["detail"]
            assert client.get("/v1/status").json()["memory"]["pinned_bytes"] == 3 * SMALL_STUDY_BYTES
        assert [wait(client, job_id)["state"] for job_id in jobs] == ["done"] * 3
        assert upload(client, ct, pet)  # the studies are free to go now
        assert client.get("/v1/status").json()["memory"]["pinned_bytes"] == 0


def test_queue_is_bounded(models):
    with service(max_queued_jobs=2) as client:
        study_id = upload(client, *small_study())
        with device_held():
            running = submit(client, study_id).json()["job_id"]
            wait(client, running, until=("running",))
            queued = [submit(client, study_id) for _ in range(2)]
            assert all(answer.status_code == 202 for answer in queued)
            refused = submit(client, study_id)
            assert refused.status_code == 429 and refused.headers["Retry-After"] == "30"
            assert refused.json()["error"] == "too many jobs" and "try again" in refused.json()["detail"]
            assert client.get("/v1/status").json()["jobs"] == {"cpu": {"queued": 2, "running": 1}}
            deadline = time.monotonic() + 10
            while "waiting for the device" not in client.get(f"/v1/jobs/{running}").json()["stage"]:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert client.delete(f"/v1/jobs/{queued[1].json()['job_id']}").json()["state"] == "cancelled"
            again = submit(client, study_id)  # a cancelled job frees its place
            assert again.status_code == 202
            assert client.delete(f"/v1/jobs/{running}").status_code == 200  # cancel works while it waits
            assert wait(client, running)["state"] == "cancelled"
        assert client.get("/v1/health").status_code == 200
        for answer in (queued[0], again):
            assert wait(client, answer.json()["job_id"])["state"] == "done"


def test_job_and_batch_share_one_model(models, tmp_path, monkeypatch):
    from attumamba.inference.segmenter import Segmenter

    folder = tmp_path / "studies"
    folder.mkdir()
    for name, seed in (("alpha", 0), ("beta", 1), ("gamma", 2)):
        ct, pet = small_study(seed)
        sitk.WriteImage(ct, str(folder / f"{name}_ct.nii.gz"))
        sitk.WriteImage(pet, str(folder / f"{name}_pet.nii.gz"))
    shared = make_tiny_package(tmp_path / "only" / "shared")
    monkeypatch.setenv("ATTUMAMBA_MODELS", str(shared.parent))  # a model no earlier test has loaded
    built, running, most = [], [0], [0]
    lock = threading.Lock()
    original_init, original_segment = Segmenter.__init__, Segmenter.segment

    def counting_init(self, *args, **kwargs):
        built.append(self)
        original_init(self, *args, **kwargs)

    def counting_segment(self, *args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            return original_segment(self, *args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(Segmenter, "__init__", counting_init)
    monkeypatch.setattr(Segmenter, "segment", counting_segment)
    with service() as client:
        batch = client.post("/v1/batches", json={"input_dir": str(folder), "output_dir": str(tmp_path / "out"),
                                                 "model": str(shared), "device": "cpu"}).json()["batch_id"]
        study_id = upload(client, *small_study())
        jobs = [submit(client, study_id, device="cpu").json()["job_id"] for _ in range(3)]
        assert [wait(client, job_id)["state"] for job_id in jobs] == ["done"] * 3
        deadline = time.monotonic() + 120
        while client.get(f"/v1/batches/{batch}").json()["state"] not in ("done", "failed", "cancelled"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert client.get(f"/v1/batches/{batch}").json()["state"] == "done"
        assert len(built) == 1, f"{len(built)} copies of the model were loaded for one device"
        assert most[0] == 1, f"{most[0]} segmentations ran at once on one device"
