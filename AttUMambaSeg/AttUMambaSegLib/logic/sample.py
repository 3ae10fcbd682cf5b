"""Synthetic PET/CT studies: the backend's sample for a new user, and a tiny one for the self-test.

:class:`SampleLoading` asks the backend for a whole-body study made by its ``synth`` generator
(``POST /v1/samples``), follows its progress, downloads its CT and PET and adds them as volume
nodes under a study of their own, named and tagged (DICOM modality) so that they are picked as
the module's inputs. It is stepped from the GUI timer like a segmentation run (:mod:`.staged`):
requests on a worker thread, the volumes down in the transfer helper process, MRML only in
``step``; cancelling or a failure leaves the scene as it was.

The self-test's study (:func:`synthetic_study`) is made here without a backend: CT in HU and PET
in SUV on grids of their own (as a scanner writes them), a soft-tissue elliptic cylinder in air
and on the PET a sphere of SUV 12 in a background of SUV 1; small enough to segment in seconds.
"""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .batch import PET_COLOR_ID
from .client import BackendClient, BackendError
from .geometry import ijk_to_ras_from_lps
from .hierarchy import CreatedNodes
from .inputs import MODALITY_ATTRIBUTE
from .staged import StagedWork
from .volumes import add_volume, add_volume_file

#: The backend's sample choices (``POST /v1/samples``; the ``synth`` command's options).
TRACERS = ("mixed", "fdg", "psma")
PROFILES = ("compact", "full")
#: Overall progress at the start of each stage; "generate" spans the backend's progress.
STAGE_START = {"request": 0.0, "generate": 0.02, "download": 0.75, "load": 0.95}

#: Where the hot sphere is (LPS, mm) and its radius.
LESION_CENTRE_LPS = (20.0, -10.0, 6.0)
LESION_RADIUS_MM = 12.0
LESION_SUV = 12.0


def _grid(size, spacing) -> tuple[sitk.Image, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """An empty image centred on the origin and its voxel centres' LPS coordinates (x, y, z arrays)."""
    size, spacing = np.asarray(size), np.asarray(spacing, float)
    origin = -(size - 1) * spacing / 2.0
    k, j, i = np.indices(size[::-1])
    coordinates = (origin[0] + i * spacing[0], origin[1] + j * spacing[1], origin[2] + k * spacing[2])
    image = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in origin])
    return image, coordinates


def _with_array(template: sitk.Image, array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.CopyInformation(template)
    return image


def synthetic_study(seed: int = 0) -> tuple[sitk.Image, sitk.Image]:
    """(CT, PET) as SimpleITK images, sharing one patient space."""
    rng = np.random.default_rng(seed)
    ct_template, (x, y, z) = _grid((80, 64, 40), (2.5, 2.5, 3.0))
    body = (x / 90.0) ** 2 + (y / 70.0) ** 2 <= 1.0
    sphere = _sphere(x, y, z)
    ct = np.where(body, rng.normal(40.0, 12.0, body.shape), -1000.0) + np.where(sphere, 15.0, 0.0)

    pet_template, (x, y, z) = _grid((52, 40, 30), (4.0, 4.0, 4.0))
    body = (x / 90.0) ** 2 + (y / 70.0) ** 2 <= 1.0
    pet = np.where(body, rng.normal(1.0, 0.08, body.shape).clip(0.2), 0.0)
    pet = np.where(_sphere(x, y, z), LESION_SUV, pet)
    return _with_array(ct_template, ct), _with_array(pet_template, pet)


def _sphere(x, y, z) -> np.ndarray:
    cx, cy, cz = LESION_CENTRE_LPS
    return (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= LESION_RADIUS_MM ** 2


def write_synthetic_study(folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write the study as ``CT.nrrd`` and ``PET.nrrd`` into ``folder``; their paths by name."""
    paths = {"CT": Path(folder) / "CT.nrrd", "PET": Path(folder) / "PET.nrrd"}
    for image, name in zip(synthetic_study(seed), ("CT", "PET")):
        sitk.WriteImage(image, str(paths[name]))
    return paths


def add_synthetic_study(scene, seed: int = 0) -> tuple[object, object]:
    """The study as volume nodes "CT" and "PET" at the scene's top, named as a user's files would be
    (no DICOM tags: the module tells them apart by name); on failure none."""
    created = CreatedNodes(scene)
    try:
        return tuple(add_volume(created, sitk.GetArrayFromImage(image),
                                ijk_to_ras_from_lps(image.GetOrigin(), image.GetSpacing(), image.GetDirection()), name,
                                None)
                     for image, name in zip(synthetic_study(seed), ("CT", "PET")))
    except BaseException:
        created.discard()
        raise


class SampleLoading(StagedWork):
    """A synthetic study from the backend as CT and PET volume nodes (``ct``, ``pet`` once done).

    ``on_progress(stage, progress 0..1, message)`` is called from :meth:`step`; the final stage is
    ``done``, ``failed`` or ``cancelled``. ``study_id`` is the backend's stored study.
    """

    STAGE_START = STAGE_START
    WHAT = "loading the sample"
    CANCELLED = "cancelled; nothing was added"

    def __init__(self, client: BackendClient, scene, *, tracer: str = "mixed", profile: str = "compact",
                 seed: int = 0, on_progress=None, poll_interval_s: float = 0.5):
        if tracer not in TRACERS or profile not in PROFILES:
            raise ValueError(f"choose a tracer among {', '.join(TRACERS)} and a profile among {', '.join(PROFILES)}")
        super().__init__("request", "asking the backend for a sample study", on_progress, "attumamba-sample")
        self.client, self.scene, self.poll_interval_s = client, scene, poll_interval_s
        self.choices = {"tracer": tracer, "profile": profile, "seed": int(seed)}
        self.sample_id: str | None = None
        self.study: dict | None = None   # the backend's stored study: study_id, grids, meta
        self.ct = self.pet = None
        self._next_poll = 0.0

    @property
    def name(self) -> str:
        """What the nodes are called after: "Sample synth_0000" (the generator's case)."""
        return f"Sample {(self.study or {}).get('meta', {}).get('case_id', 'study')}"

    def _start_work(self) -> None:
        if self.stage == "request":
            self._run(self.client.request_sample, self.choices)
        elif self.stage == "generate":
            if time.monotonic() >= self._next_poll:
                self._next_poll = time.monotonic() + self.poll_interval_s
                self._run(self.client.sample_status, self.sample_id)
        elif self.stage == "download":
            self._folder = Path(tempfile.mkdtemp(prefix="attumamba-sample-"))
            self._transfer(*[("download_volume", self.study["study_id"], which, self._folder / f"{which}.nrrd")
                             for which in ("ct", "pet")])
        elif self.stage == "load":
            self.ct, self.pet = add_study_volumes(self.scene, self._folder, self.name)
            self._finish("done", f"{self.name}: {self.study['meta'].get('n_lesions', '?')} lesions made by the "
                                 f"generator ({self.study['meta'].get('tracer', '').upper()})")

    def _finished_work(self, future: Future) -> None:
        status = future.result()
        if self.stage == "request":
            self.sample_id = status["sample_id"]
            self._enter("generate", "queued on the backend")
        elif self.stage == "generate":
            self._sample_status(status)
        elif self.stage == "download":
            self._enter("load", "adding the volumes")

    def _sample_status(self, status: dict) -> None:
        state = status.get("state")
        if state == "done":
            self.study = status["study"]
            self._enter("download", "downloading the CT and PET")
        elif state == "failed":
            raise BackendError(f"the backend could not make the sample: {status.get('message') or 'no reason given'}")
        elif state == "cancelled":
            self._finish("cancelled", "the backend's sample was cancelled; nothing was added")
        else:
            span = STAGE_START["download"] - STAGE_START["generate"]
            self._say(STAGE_START["generate"] + span * float(status.get("progress") or 0.0),
                      f"making the study: {status.get('stage') or state}")

    def _cancel_backend(self, pending: Future | None) -> None:
        sample_id = self.sample_id
        if sample_id is None and pending is not None and pending.done() and pending.exception() is None:
            sample_id = pending.result().get("sample_id")  # requested as we cancelled
        if sample_id is not None:
            try:
                self.client.cancel_sample(sample_id)
            except BackendError:
                pass  # already finished or gone: nothing left to stop


def add_study_volumes(scene, folder: Path, name: str) -> tuple[object, object]:
    """``folder``'s ct.nrrd and pet.nrrd as "<name> CT" and "<name> PET" under a study ``name``; on failure none."""
    created = CreatedNodes(scene)
    try:
        study = created.add_study(name)
        ct = add_volume_file(created, folder / "ct.nrrd", f"{name} CT", study)
        pet = add_volume_file(created, folder / "pet.nrrd", f"{name} PET", study)
        ct.SetAttribute(MODALITY_ATTRIBUTE, "CT")
        pet.SetAttribute(MODALITY_ATTRIBUTE, "PT")
        if scene.GetNodeByID(PET_COLOR_ID) is not None:
            pet.GetDisplayNode().SetAndObserveColorNodeID(PET_COLOR_ID)
    except BaseException:
        created.discard()
        raise
    return ct, pet

