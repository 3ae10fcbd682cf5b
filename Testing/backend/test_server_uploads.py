"""What the service reads from uploads (issue 15, items 1, 4 and 11), through the real service on
loopback: detached-header files that would read a server file, content-sniffed formats under a
volume's name, compressed bombs, NaN checks without copies, grids that resampling would blow up,
and labelmaps with huge label values. Each refusal is a 4xx with a clear text; the server serves
a normal request afterwards and no upload temp folder is left. Memory findings are measured as
this process's peak RSS (the server runs in it) over the request."""

from __future__ import annotations

import gzip
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from loopback import serving
from tiny_model import make_tiny_package, small_study

from attumamba.errors import InputError
from attumamba.inference import Segmenter, open_model
from attumamba.io import find_studies
from attumamba.server import Limits, ServerState, create_app, image_bytes, read_image_bytes

TOKEN = "uploads-token-0123456789abcdef0123456789"
DECODED_LIMIT = 256 << 20


@pytest.fixture(scope="module")
def private_tmp(tmp_path_factory):
    """The process's temp folder for this module: leftovers are ours, whatever else runs on the machine."""
    saved, tempfile.tempdir = tempfile.tempdir, str(tmp_path_factory.mktemp("tmp"))
    yield Path(tempfile.tempdir)
    tempfile.tempdir = saved


@pytest.fixture(scope="module")
def server(tmp_path_factory, private_tmp):
    models = tmp_path_factory.mktemp("models")
    make_tiny_package(models / "tiny")
    limits = Limits(max_upload_bytes=8 << 20, max_decoded_bytes=DECODED_LIMIT)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATTUMAMBA_MODELS", str(models))
        app = create_app(ServerState(token=TOKEN, limits=limits))
        with serving(app) as url, httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"},
                                               timeout=120) as client:
            client.tiny = str(models / "tiny")
            yield client


@pytest.fixture()
def serves_after(server, private_tmp):
    """After the test: a normal upload still works and no upload temp folder is left."""
    yield
    ct, pet = small_study()
    normal = server.post("/v1/studies", files={"ct": ("ct.nrrd", image_bytes(ct)), "pet": ("pet.nrrd", image_bytes(pet))})
    assert normal.status_code == 200, normal.text
    assert not list(private_tmp.glob("attumamba-upload-*"))


def refused(answer: httpx.Response, *texts: str) -> str:
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    body = answer.json()
    assert set(body) == {"error", "detail"} and "Traceback" not in answer.text
    for text in texts:
        assert text in body["detail"], (text, body["detail"])
    return body["detail"]


def upload(client, ct_file: tuple[str, bytes], pet_file: tuple[str, bytes] | None = None) -> httpx.Response:
    pet_file = pet_file or ("pet.nrrd", image_bytes(small_study()[1]))
    return client.post("/v1/studies", files={"ct": ct_file, "pet": pet_file})


@contextmanager
def peak_rss_growth():
    """Peak resident memory of this process (the server included) above its start, in MiB: ``box["mib"]``."""
    clear_refs = Path("/proc/self/clear_refs")
    try:
        clear_refs.write_text("5")  # resets VmHWM (Linux)
    except OSError:
        pytest.skip("peak RSS needs Linux's /proc/self/clear_refs")
    start, box = _status_kib("VmRSS"), {}
    yield box
    box["mib"] = (_status_kib("VmHWM") - start) / 1024


def _status_kib(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


# --- item 1: uploads can read any file -------------------------------------------------------

SECRET_SHAPE = (40, 40, 40)


def secret_file(folder: Path) -> Path:
    """A server file with the byte count of a CT that overlaps the study's PET."""
    path = folder / "secret.bin"
    path.write_bytes(np.random.default_rng(7).integers(0, 1000, SECRET_SHAPE, dtype=np.int16).tobytes())
    return path


def metaimage_header(data_line: str) -> bytes:
    return ("ObjectType = Image\nNDims = 3\nDimSize = 40 40 40\nElementSpacing = 2.5 2.5 2.5\n"
            f"Offset = -48.75 -48.75 -48.75\nElementType = MET_SHORT\n{data_line}\n").encode()


def nrrd_header(data_line: str | None, newline: str = "\n") -> bytes:
    """A NRRD header of the CT's grid, with ``data_line`` (None: the voxels follow it)."""
    lines = ["NRRD0004", "type: short", "dimension: 3", "space: left-posterior-superior", "sizes: 40 40 40",
             "space directions: (2.5,0,0) (0,2.5,0) (0,0,2.5)", "space origin: (-48.75,-48.75,-48.75)",
             "encoding: raw", "endian: little"]
    return newline.join([*lines, *([data_line] if data_line else []), "", ""]).encode()


def test_mhd_upload_cannot_read_a_server_file(server, serves_after, tmp_path):
    secret = secret_file(tmp_path)
    mhd = metaimage_header(f"ElementDataFile = {secret}")
    attempts = [("ct.mhd", mhd, ".mhd header"), ("CT.MHD", mhd, ".mhd header"),
                ("ct.mha", mhd, f"ElementDataFile is '{secret}', not LOCAL"),
                ("ct.mha", metaimage_header(f"  ElementDataFile : {secret}"), "not LOCAL"),
                ("ct.mha", metaimage_header("ElementDataFile = /dev/zero"), "not LOCAL"),
                ("ct.mha", metaimage_header(f"elementdatafile = LOCAL\nElementDataFile = {secret}"), "standard")]
    for name, header, text in attempts:
        refused(upload(server, (name, header)), "the CT", text)
    # a re-measure upload is held to the same rule
    study_id = upload(server, ("ct.nrrd", image_bytes(small_study()[0]))).json()["study_id"]
    answer = server.post(f"/v1/studies/{study_id}/measure", files={"labelmap": ("edit.mhd", mhd)})
    refused(answer, "the labelmap", ".mhd header", ".nrrd, .mha or .nii.gz")


def test_nrrd_with_detached_data_file_is_refused(server, serves_after, tmp_path):
    secret = secret_file(tmp_path)
    attempts = [("ct.nhdr", nrrd_header(f"data file: {secret}")),
                ("ct.nrrd", nrrd_header(f"data file: {secret}")),
                ("ct.nrrd", nrrd_header(f"DATA FILE: {secret}")),
                ("ct.NRRD", nrrd_header(f"datafile: {secret}", newline="\r\n")),
                ("ct.nrrd", nrrd_header(f"data file: {secret}", newline="\r"))]
    for name, header in attempts:
        refused(upload(server, (name, header)), "the CT", "a self-contained .nrrd, .mha or .nii.gz")
    # the same header with its voxels attached is a normal upload
    attached = nrrd_header(None) + secret.read_bytes()
    assert upload(server, ("ct.nrrd", attached)).status_code == 200


def test_files_are_read_by_their_suffix_not_by_their_content(server, serves_after, tmp_path):
    """SimpleITK picks DICOM, TIFF, HDF5, PNG... readers by content whatever the name; the service never does."""
    ct = sitk.Cast(small_study()[0], sitk.sitkInt16)
    tiff = tmp_path / "ct.tif"
    sitk.WriteImage(ct, str(tiff))
    disguised = tmp_path / "ct_as.nrrd"
    disguised.write_bytes(tiff.read_bytes())
    assert sitk.ReadImage(str(disguised)).GetSize() == ct.GetSize()  # what plain SimpleITK does
    refused(upload(server, ("ct.nrrd", tiff.read_bytes())), "not a NRRD file")
    refused(upload(server, ("ct.nii.gz", tiff.read_bytes())), "no NIfTI-1/NIfTI-2 magic")
    refused(upload(server, ("ct.mha", tiff.read_bytes())), "not a MetaImage")
    refused(upload(server, ("ct.nii.gz", metaimage_header("ElementDataFile = /etc/hostname"))), "no NIfTI")
    refused(upload(server, ("ct.nii", nrrd_header("data file: /etc/hostname"))), "no NIfTI")
    pair = tmp_path / "pair.hdr"  # a NIfTI-1 header of a .hdr/.img pair, sent as .nii
    nib.save(nib.Nifti1Pair(np.zeros((4, 4, 4), np.int16), np.eye(4)), str(tmp_path / "pair.img"))
    refused(upload(server, ("ct.nii", pair.read_bytes())), "separate .img file")


def test_batch_discovery_never_reads_data_outside_a_study_folder(server, serves_after, tmp_path):
    secret = secret_file(tmp_path)
    evil = tmp_path / "inputs" / "evil"
    evil.mkdir(parents=True)
    (evil / "case_ct.mhd").write_bytes(metaimage_header(f"ElementDataFile = {secret}"))
    sitk.WriteImage(small_study()[1], str(evil / "case_pet.nii.gz"))
    good = tmp_path / "inputs" / "good"  # a .mhd + .raw pair inside its own folder stays fine
    good.mkdir()
    ct, pet = small_study()
    sitk.WriteImage(ct, str(good / "case_ct.mhd"))
    sitk.WriteImage(pet, str(good / "case_pet.nii.gz"))
    scan = find_studies(tmp_path / "inputs")
    assert [study.ct for study in scan] == [good / "case_ct.mhd"]
    reasons = {item.path: item.reason for item in scan.skipped}
    assert "lies outside the study's folder" in reasons[evil / "case_ct.mhd"]
    answer = server.post("/v1/batches", json={"input_dir": str(evil), "output_dir": str(tmp_path / "out"),
                                             "model": server.tiny, "device": "cpu"})
    assert answer.status_code == 202, answer.text
    for _ in range(600):
        status = server.get(f"/v1/batches/{answer.json()['batch_id']}").json()
        if status["state"] in ("done", "failed", "cancelled"):
            break
        time.sleep(0.05)
    assert status["state"] == "failed" and "lies outside the study's folder" in status["message"], status


# --- item 4: compressed bombs and oversized grids ----------------------------------------------

def nifti_bomb(shape: tuple[int, int, int], dtype=np.float64) -> bytes:
    """A .nii.gz of zeros: one gzip member for the header, then identical 16 MiB members (fast to make)."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header["vox_offset"] = 352
    header.set_zooms((2.5, 2.5, 2.5))
    decoded = int(np.prod(shape)) * np.dtype(dtype).itemsize
    block = 16 << 20
    member = gzip.compress(bytes(block), 9)
    return gzip.compress(header.binaryblock + b"\0" * 4, 9) + member * (decoded // block) + \
        gzip.compress(bytes(decoded % block), 9)


def test_compressed_bomb_is_refused_before_decoding(server, serves_after):
    bomb = nifti_bomb((512, 512, 512))  # 1 GiB of float64 once decoded
    assert len(bomb) < 2 << 20
    with peak_rss_growth() as peak:
        answer = upload(server, ("ct.nii.gz", bomb))
    refused(answer, "the CT would decode to 1,024 MiB", "more than the limit of 256 MiB")
    assert peak["mib"] < 64, peak


def test_nan_check_does_not_copy_the_volume(server, serves_after):
    array = np.zeros((256, 256, 256), np.float32)  # 64 MiB decoded
    array[-1, -1, -1] = np.nan
    image = sitk.GetImageFromArray(array)
    del array
    data = image_bytes(image)
    del image
    with peak_rss_growth() as peak:
        answer = upload(server, ("ct.nrrd", data))
    refused(answer, "the CT holds NaN or infinite voxels")
    # the volume itself (64 MiB) and bounded slabs, not a 64 MiB copy plus a 16 MiB boolean mask
    assert peak["mib"] < 64 + 16, peak


def test_float64_volumes_are_kept_as_float32(server, serves_after):
    ct, pet = small_study()
    answer = upload(server, ("ct.nii.gz", image_bytes_as(sitk.Cast(ct, sitk.sitkFloat64), ".nii.gz")),
                    ("pet.mha", image_bytes_as(sitk.Cast(pet, sitk.sitkFloat64), ".mha")))
    assert answer.status_code == 200, answer.text
    stored = read_image_bytes(server.get(f"/v1/studies/{answer.json()['study_id']}/volumes/pet").content)
    assert stored.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(stored), sitk.GetArrayViewFromImage(pet), rtol=1e-6)


def image_bytes_as(image: sitk.Image, suffix: str) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"volume{suffix}"
        sitk.WriteImage(image, str(path), useCompression=True)
        return path.read_bytes()


def scaled_study(factor: float) -> tuple[sitk.Image, sitk.Image]:
    """The small study with every spacing and origin multiplied (the same patient box, scaled)."""
    scaled = []
    for image in small_study():
        image = sitk.Image(image)
        image.SetSpacing([s * factor for s in image.GetSpacing()])
        image.SetOrigin([o * factor for o in image.GetOrigin()])
        scaled.append(image)
    return scaled[0], scaled[1]


def test_huge_spacing_is_refused_at_submit(server, serves_after):
    ct, pet = scaled_study(400.0)  # PET voxels of 2 m: 8000³ voxels at the model's 5 mm
    study = upload(server, ("ct.nrrd", image_bytes(ct)), ("pet.nrrd", image_bytes(pet)))
    assert study.status_code == 200, study.text
    with peak_rss_growth() as peak:
        answer = server.post("/v1/jobs", json={"study_id": study.json()["study_id"], "model": "tiny"})
    refused(answer, "becomes 5.12e+11 voxels on model 'tiny'", "check the spacing in the file's header")
    assert peak["mib"] < 64, peak
    normal = upload(server, ("ct.nrrd", image_bytes(small_study()[0]))).json()["study_id"]
    job = server.post("/v1/jobs", json={"study_id": normal, "model": "tiny"})
    assert job.status_code == 202, job.text
    for _ in range(1200):  # done before the next test measures memory
        if server.get(f"/v1/jobs/{job.json()['job_id']}").json()["state"] in ("done", "failed", "cancelled"):
            break
        time.sleep(0.05)
    assert server.get(f"/v1/jobs/{job.json()['job_id']}").json()["state"] == "done"


def test_spacing_below_one_model_voxel_is_refused_at_submit(server, serves_after):
    ct, pet = scaled_study(1e-4)  # the whole PET is 0.01 mm across: no voxel at 5 mm
    study = upload(server, ("ct.nrrd", image_bytes(ct)), ("pet.nrrd", image_bytes(pet)))
    answer = server.post("/v1/jobs", json={"study_id": study.json()["study_id"], "model": "tiny"})
    refused(answer, "thinner than one voxel of model 'tiny'")


def test_huge_spacing_is_refused_before_preprocessing(server):
    """The CLI and batch runs go through the segmenter: it refuses before nnU-Net resamples."""
    segmenter = Segmenter(open_model(server.tiny), "cpu")
    with peak_rss_growth() as peak, pytest.raises(InputError, match="more than the limit"):
        segmenter.segment(*scaled_study(400.0))
    assert peak["mib"] < 64, peak


# --- item 11: /measure with huge label values --------------------------------------------------

def blobs_labelmap(values: list, dtype) -> sitk.Image:
    """Cubes of 6³ voxels on the CT grid, the n-th cube holding ``values[n]``."""
    ct = small_study()[0]
    array = np.zeros(sitk.GetArrayViewFromImage(ct).shape, dtype)
    for n, value in enumerate(values):
        array[4 + 8 * n: 10 + 8 * n, 10:16, 12:18] = value
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(ct)
    return image


def measure(client, study_id: str, labels: sitk.Image) -> httpx.Response:
    return client.post(f"/v1/studies/{study_id}/measure", files={"labelmap": ("edit.nrrd", image_bytes(labels))})


def test_measure_with_huge_label_values(server, serves_after):
    study_id = upload(server, ("ct.nrrd", image_bytes(small_study()[0]))).json()["study_id"]
    huge = [5_000_000, 2 ** 31 - 1, 2 ** 31, 2 ** 40]
    with peak_rss_growth() as peak:
        answer = measure(server, study_id, blobs_labelmap(huge, np.int64))
    assert answer.status_code == 200, answer.text
    assert peak["mib"] < 64, peak
    lesions = answer.json()["lesions"]
    assert [lesion["id"] for lesion in lesions] == huge  # each lesion keeps its own id
    assert {lesion["voxels"] for lesion in lesions} == {216}
    as_float = measure(server, study_id, blobs_labelmap([5e6, 7e6], np.float32))
    assert [lesion["id"] for lesion in as_float.json()["lesions"]] == [5_000_000, 7_000_000]
    for values, dtype, text in (([3, -2], np.int16, "negative values"), ([1.5], np.float32, "non-integer values"),
                                ([2 ** 60], np.uint64, "above 2^53")):
        refused(measure(server, study_id, blobs_labelmap(values, dtype)), text)
    small = measure(server, study_id, blobs_labelmap([1, 2], np.uint8))
    assert [lesion["id"] for lesion in small.json()["lesions"]] == [1, 2]
