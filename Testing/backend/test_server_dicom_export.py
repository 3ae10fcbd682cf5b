"""``POST /v1/studies/{id}/dicom`` on the real service (loopback): the zip of a DICOM SEG and SR of
an edited labelmap, built from JSON references alone, equal to what ``measure`` reports; bad
input answered with a 4xx that says what is wrong, and no temporary folder left behind."""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
import SimpleITK as sitk
from loopback import serving
from test_io_dicom_sr import check_seg_and_sr, references_of

from attumamba.io import load_volume
from attumamba.server import Limits, ServerState, create_app, image_bytes

TOKEN = "test-token-dicom-export-0123456789"


@pytest.fixture(scope="module")
def server():
    limits = Limits(max_upload_bytes=8 << 20, max_voxels=2_000_000, max_studies_bytes=64 << 20)
    with serving(create_app(ServerState(token=TOKEN, limits=limits))) as url, \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def stored(server, tmp_path_factory, write_dicom_pair):
    """A DICOM study uploaded as volumes (as the module does): its folders, CT, id and a labelmap."""
    ct_dir, pet_dir = write_dicom_pair(tmp_path_factory.mktemp("export"), pet_slices=6)
    ct, pet = load_volume(ct_dir), load_volume(pet_dir)
    volumes = {"ct": ("ct.nrrd", image_bytes(ct)), "pet": ("pet.nrrd", image_bytes(pet))}
    answer = server.post("/v1/studies", files=volumes)
    assert answer.status_code == 200, answer.text
    labels = np.zeros(ct.GetSize()[::-1], np.uint16)
    labels[1:4, 2:6, 3:8] = 3  # the module's own numbering (edited: lesion 3 and 5) is kept
    labels[4:6, 7:9, 9:11] = 5
    return ct_dir, pet_dir, ct, answer.json()["study_id"], labels


def _labelmap(reference: sitk.Image, labels: np.ndarray) -> bytes:
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(reference)
    return image_bytes(image)


def export(server, study_id, labelmap: bytes, references, **fields):
    data = {"references": references if isinstance(references, str) else json.dumps(references), **fields}
    return server.post(f"/v1/studies/{study_id}/dicom", files={"labelmap": ("edit.nrrd", labelmap)}, data=data)


def _leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("attumamba-dicom-*")}


def test_export_returns_seg_and_sr_equal_to_the_measured_report(server, stored, tmp_path):
    ct_dir, pet_dir, ct, study_id, labels = stored
    before = _leftovers()
    answer = export(server, study_id, _labelmap(ct, labels), references_of(ct_dir, pet_dir), model="tiny v1")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        assert sorted(archive.namelist()) == ["lesions_seg.dcm", "lesions_sr.dcm"]
        archive.extractall(tmp_path)
    assert _leftovers() == before  # the private temporary folder is gone
    measured = server.post(f"/v1/studies/{study_id}/measure", files={"labelmap": ("edit.nrrd", _labelmap(ct, labels))})
    report = measured.json()
    assert [lesion["id"] for lesion in report["lesions"]] == [3, 5]
    check_seg_and_sr(tmp_path / "lesions_seg.dcm", tmp_path / "lesions_sr.dcm", labels, report, ct_dir, pet_dir)


@pytest.mark.parametrize(("references", "message"), [
    ("{not json", "references is not JSON"),
    ("[1, 2]", "references must be a JSON object"),
    ({"ct": {}}, "references.StudyInstanceUID is missing"),
])
def test_malformed_references_are_refused(server, stored, references, message):
    ct_dir, _, ct, study_id, labels = stored
    answer = export(server, study_id, _labelmap(ct, labels), references)
    assert answer.status_code == 422 and message in answer.json()["detail"]


def test_what_does_not_fit_is_refused_with_a_clear_4xx(server, stored):
    ct_dir, _, ct, study_id, labels = stored
    before = _leftovers()
    short = references_of(ct_dir)
    short["ct"]["instances"].pop()
    answer = export(server, study_id, _labelmap(ct, labels), short)
    assert answer.status_code == 422 and "not on the grid of CT series" in answer.json()["detail"]
    empty = export(server, study_id, _labelmap(ct, np.zeros_like(labels)), references_of(ct_dir))
    assert empty.status_code == 422 and "holds no lesion" in empty.json()["detail"]
    no_refs = server.post(f"/v1/studies/{study_id}/dicom", files={"labelmap": ("edit.nrrd", _labelmap(ct, labels))})
    assert no_refs.status_code == 422 and "references" in no_refs.json()["detail"]
    unknown = export(server, "nosuchstudy", _labelmap(ct, labels), references_of(ct_dir))
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown study"
    assert _leftovers() == before
    no_token = httpx.post(f"{server.base_url}/v1/studies/{study_id}/dicom", data={"references": "{}"})
    assert no_token.status_code == 401
