"""The shipped default model: a safe, small, documented package that segments a held-out synthetic
study end to end, in process and through the HTTP service on loopback. (Its accuracy is measured by
Testing/benchmarks/eval_heldout.py and recorded in its model.json, not asserted here.)"""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from loopback import serving

from attumamba.inference import Segmenter, resolve_model, run_study
from attumamba.inference.package import SHIPPED_MODELS
from attumamba.metrics import evaluate_case
from attumamba.server import ServerState, create_app, image_bytes, read_image_bytes
from attumamba.synth import synthesize

HELD_OUT_SEED = 2  # the training studies used seed 1


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A compact held-out study cut to 12 cm of body around its largest lesion (fewer tiles)."""
    (folder,) = synthesize(tmp_path_factory.mktemp("heldout"), 1, seed=HELD_OUT_SEED, profile="compact", fmt="nifti",
                           first_index=3)
    ct, pet = sitk.ReadImage(str(folder / "CT.nii.gz")), sitk.ReadImage(str(folder / "SUV.nii.gz"))
    truth = sitk.ReadImage(str(folder / "SEG_instances_ct.nii.gz"))
    array = sitk.GetArrayViewFromImage(truth)
    largest = np.bincount(array.ravel())[1:].argmax() + 1
    z_mm = truth.TransformIndexToPhysicalPoint([0, 0, int(np.nonzero(array == largest)[0].mean())])[2]

    def slab(image):
        index = [image.TransformPhysicalPointToIndex((0, 0, z_mm + dz))[2] for dz in (-60, 60)]
        low, high = max(0, min(index)), min(image.GetSize()[2], max(index))
        return image[:, :, low:high]

    return slab(ct), slab(pet), slab(truth) > 0


def test_the_package_is_small_safe_and_documented():
    package = resolve_model(None)
    assert package.root.parent == SHIPPED_MODELS and package.manifest.get("default") is True
    size = sum(p.stat().st_size for p in package.root.rglob("*") if p.is_file())
    assert size <= 30 * 1024 ** 2
    for checkpoint in package.checkpoints:
        torch.load(checkpoint, weights_only=True)
    manifest = package.manifest
    assert "attumamba-seg train" in " ".join(manifest["training"]["commands"])
    assert {"dice", "fpv_ml", "fnv_ml"} <= set(manifest["metrics"])


def test_it_segments_a_held_out_study_and_the_report_matches_the_labelmap(study):
    ct, pet, truth = study
    result = run_study(Segmenter(resolve_model(None), "cpu"), ct, pet)
    labels = sitk.GetArrayFromImage(result.instances)
    assert result.instances.GetSize() == ct.GetSize()
    assert labels.max() == result.report["totals"]["n_lesions"]
    assert [lesion["voxels"] for lesion in result.report["lesions"]] == \
        [int((labels == n).sum()) for n in range(1, labels.max() + 1)]
    suv = sitk.GetArrayViewFromImage(pet)
    assert all(0 <= lesion["suv_mean"] <= lesion["suv_max"] <= suv.max() for lesion in result.report["lesions"])
    scores = evaluate_case(labels > 0, sitk.GetArrayFromImage(truth), ct.GetSpacing()[::-1])
    assert set(scores) >= {"dice", "fpv_ml", "fnv_ml"}


def test_http_round_trip_with_the_default_model(study):
    ct, pet, truth = study
    app = create_app(ServerState(token="default-model-test"))
    with serving(app) as url, httpx.Client(base_url=url, timeout=300,
                                           headers={"Authorization": "Bearer default-model-test"}) as client:
        study_id = client.post("/v1/studies", files={"ct": ("ct.nrrd", image_bytes(ct)),
                                                     "pet": ("pet.nrrd", image_bytes(pet))}).json()["study_id"]
        job_id = client.post("/v1/jobs", json={"study_id": study_id}).json()["job_id"]
        stages = set()
        while (status := client.get(f"/v1/jobs/{job_id}").json())["state"] not in ("done", "failed"):
            stages.add(status["stage"])
            time.sleep(0.1)
        assert status["state"] == "done", status
        labels = read_image_bytes(client.get(f"/v1/jobs/{job_id}/labelmap").content)
        report = client.get(f"/v1/jobs/{job_id}/lesions").json()
    assert "network" in stages
    array = sitk.GetArrayFromImage(labels)
    assert labels.GetSize() == ct.GetSize() and array.max() == report["totals"]["n_lesions"]
    in_process = run_study(Segmenter(resolve_model(None), "cpu"), ct, pet)
    assert np.array_equal(array, sitk.GetArrayFromImage(in_process.instances))  # the service adds nothing
