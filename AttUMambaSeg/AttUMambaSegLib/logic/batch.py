"""Batch runs from Slicer: every study of a folder segmented on the backend, and a finished study opened as nodes.

The backend does the work and writes the files, on its own machine (the folders are its
paths). :class:`BatchRun` starts, watches and cancels a batch: neither making one nor
:meth:`BatchRun.poll`, called from a GUI timer, waits (its requests, the submission included,
run on a daemon worker thread); scripts use :meth:`BatchRun.wait`. Opening a finished study
(:class:`StudyOpening`) downloads its CT, PET and labelmap in a helper process (:mod:`.transfers`)
and then makes the nodes in the caller's thread, the lesion nodes with :func:`results.build_result`,
so the opened study re-measures as an interactive result does.
A study that fails to open leaves the scene as it was.
"""

from __future__ import annotations

import tempfile
import time
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from .client import BackendClient, BackendError
from .hierarchy import CreatedNodes
from .results import LesionResult, build_result
from .staged import RunCancelled, StagedWork
from .volumes import add_volume_file
from .workers import SerialWorker

FINAL_STATES = ("done", "failed", "cancelled")
OPENABLE_STATES = ("done", "kept")  # studies with results: segmented by this run or kept from an earlier one
COLUMNS = ("Study", "State", "Lesions", "MTV (mL)", "Error")
PET_COLOR_ID = "vtkMRMLPETProceduralColorNodePET-Heat"


class BatchRun:
    """One batch on the backend; ``status`` is its latest ``GET /v1/batches/{id}`` answer.

    Making one checks the folders are given and sends the submission in the background
    (``state`` is ``submitting`` until it is answered). A refused submission (backend down, no
    such folder, results already there without ``resume``) ends the run as ``failed`` with the
    backend's message, kept in ``submit_error``; :meth:`wait` raises it.
    """

    def __init__(self, client: BackendClient, input_dir: str, output_dir: str, *, model: str | None = None,
                 device: str | None = None, tta: bool = False, options: dict | None = None, resume: bool = False,
                 poll_interval_s: float = 1.0):
        for label, folder in (("study folder", input_dir), ("output folder", output_dir)):
            if not str(folder or "").strip():
                raise ValueError(f"choose the {label} (a folder on the backend's machine)")
        self.client, self.poll_interval_s, self.cancelling = client, poll_interval_s, False
        self.error: Exception | None = None  # of the last status request; the batch goes on regardless
        self.submit_error: Exception | None = None  # why the backend refused the batch
        self.batch_id: str | None = None  # once the backend accepted the batch
        self.status = {"state": "submitting", "message": "sending the batch to the backend", "studies": []}
        self._requests: list[Future] = []
        self._next_poll = 0.0
        self._worker = SerialWorker("attumamba-batch")  # daemon: quitting never waits for it
        self._submission: Future | None = self._worker.submit(
            client.submit_batch, str(input_dir).strip(), str(output_dir).strip(), model, device=device, tta=tta,
            resume=resume, options=options)

    @property
    def state(self) -> str:
        return self.status["state"]

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    def poll(self) -> dict:
        """The latest status: takes the answers that came and sends the next request; never waits."""
        if self._submission is not None:
            if not self._submission.done():
                return self.status
            self._take_submission()
        while self._requests and self._requests[0].done():
            self._take(self._requests.pop(0))
        if not self.finished and not self._requests and time.monotonic() >= self._next_poll:
            self._next_poll = time.monotonic() + self.poll_interval_s
            self._requests.append(self._worker.submit(self.client.batch, self.batch_id))
        return self.status

    def wait(self, timeout_s: float = 3600.0, poll_s: float = 0.2) -> dict:
        """Poll in this thread until the batch ends (scripts, tests); cancels it after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        if self._submission is not None:
            futures.wait([self._submission], timeout=timeout_s)
            self.poll()
        if self.submit_error is not None:
            raise self.submit_error
        while not self.finished:
            if self._submission is not None or time.monotonic() > deadline:
                self.cancel()
                raise RunCancelled(f"the batch did not finish within {timeout_s:.0f} s and was cancelled")
            self._requests.append(self._worker.submit(self.client.batch, self.batch_id))
            for request in self._requests:
                self._take(request)  # in the order sent, waiting for each
            self._requests.clear()
            if self.error is not None:
                raise self.error
            if not self.finished:
                time.sleep(poll_s)
        if self.state == "cancelled":
            raise RunCancelled(self.status.get("message") or "cancelled")
        if self.state == "failed":
            raise BackendError(f"the batch failed: {self.status.get('message') or 'no reason given'}")
        return self.status

    def cancel(self) -> None:
        """Ask the backend to stop (in the background): studies finished so far are kept."""
        if not self.finished and not self.cancelling:
            self.cancelling = True
            if self.batch_id is not None:
                self._requests.append(self._worker.submit(self.client.cancel_batch, self.batch_id))
            elif self._submission is not None:  # sent as soon as the backend accepts the batch
                self._submission.add_done_callback(self._cancel_accepted)

    def rows(self) -> list[tuple[str, bool, tuple[str, ...]]]:
        """(study ID, can be opened, the cells under :data:`COLUMNS`) per study."""
        return [(s["study_id"], s["state"] in OPENABLE_STATES, _cells(s)) for s in self.status.get("studies", [])]

    def summary(self) -> str:
        studies = self.status.get("studies", [])
        finished = sum(s["state"] in ("done", "failed", "kept") for s in studies)
        counts = f" ({finished} of {len(studies)} studies finished)" if studies else ""
        state = "cancelling" if self.cancelling and not self.finished else self.state
        problem = f"; no answer from the backend: {self.error}" if self.error is not None else ""
        return f"{state.capitalize()}: {self.status.get('message') or ''}{counts}{problem}"

    def _take_submission(self) -> None:
        submission, self._submission = self._submission, None
        try:
            status = submission.result()
        except Exception as error:  # noqa: BLE001 - the run ends as failed with the backend's message
            self.submit_error = error
            self._set({"state": "failed", "message": str(error), "studies": []})
            return
        self.batch_id = status["batch_id"]
        self._set(status)

    def _cancel_accepted(self, submission: Future) -> None:
        """Cancel a batch the backend accepted after the user cancelled (on the worker thread)."""
        if submission.exception() is None:
            try:
                self.client.cancel_batch(submission.result()["batch_id"])
            except BackendError:
                pass  # already finished or gone: nothing left to stop

    def _take(self, request: Future) -> None:
        try:
            self._set(request.result())
        except Exception as error:  # noqa: BLE001 - shown in the status line; the next poll asks again
            if getattr(error, "status", None) != 404:
                self.error = error
                return
            self._set({**self.status, "state": "failed", "message": "the backend no longer knows this batch (was "
                       "it restarted?); run it again with Resume to keep the studies it finished"})

    def _set(self, status: dict) -> None:
        self.status, self.error = status, None
        if self.finished:
            self._worker.shutdown(wait=False)


def _cells(study: dict) -> tuple[str, ...]:
    state = study["state"]
    if state == "running":
        state = f"running: {study.get('stage') or ''} {100 * float(study.get('progress') or 0):.0f}%"
    lesions = "" if study.get("n_lesions") is None else str(study["n_lesions"])
    mtv = "" if study.get("mtv_ml") is None else f"{float(study['mtv_ml']):.2f}"
    return study["study_id"], state, lesions, mtv, study.get("error") or ""


@dataclass
class DownloadedStudy:
    study_id: str  # in the batch (named after its files or folder)
    store_id: str  # in the backend's study store: re-measuring uses it
    report: dict
    folder: Path   # ct.nrrd, pet.nrrd, lesions.nrrd


@dataclass
class OpenedStudy:
    study_id: str
    store_id: str
    ct: object
    pet: object
    result: LesionResult


def add_batch_study(scene, study: DownloadedStudy) -> OpenedStudy:
    """The nodes of a downloaded study, under a study item named after it; on failure none are left."""
    created = CreatedNodes(scene)
    try:
        parent = created.add_study(study.study_id)
        ct = add_volume_file(created, study.folder / "ct.nrrd", f"{study.study_id} CT", parent)
        pet = add_volume_file(created, study.folder / "pet.nrrd", f"{study.study_id} PET", parent)
        if scene.GetNodeByID(PET_COLOR_ID) is not None:
            pet.GetDisplayNode().SetAndObserveColorNodeID(PET_COLOR_ID)
        on_pet = str(study.report.get("options", {}).get("reference", "ct")).lower() == "pet"  # the batch's grid
        result = build_result(scene, ct, study.folder / "lesions.nrrd", study.report, pet_node=pet,
                              study_id=study.store_id, name=f"{study.study_id} lesions",
                              reference_node=pet if on_pet else ct)
    except BaseException:
        created.discard()
        raise
    return OpenedStudy(study.study_id, study.store_id, ct, pet, result)


def open_batch_study(client: BackendClient, batch_id: str, study_id: str, scene) -> OpenedStudy:
    """Download and add in one call (scripts, tests); the GUI steps a :class:`StudyOpening`."""
    return StudyOpening(client, batch_id, study_id, scene).wait()


class StudyOpening(StagedWork):
    """Opening a study from a GUI timer: the backend loads it (a request on the worker thread), its
    files come down in a helper process, and :meth:`step` makes the nodes; ``result``: the :class:`OpenedStudy`."""

    STAGE_START = {"open": 0.0, "download": 0.2, "build": 0.9}
    WHAT = "opening the study"
    CANCELLED = "cancelled; nothing was added"

    def __init__(self, client: BackendClient, batch_id: str, study_id: str, scene):
        super().__init__("open", f"loading {study_id} on the backend", None, "attumamba-open")
        self.client, self.batch_id, self.study_id, self.scene = client, batch_id, study_id, scene
        self._folder = Path(tempfile.mkdtemp(prefix="attumamba-open-"))
        self._opened: dict | None = None  # the backend's answer: the stored study's ID and its report
        self._run(client.open_batch_study, batch_id, study_id)

    def _start_work(self) -> None:
        if self.stage == "build":
            study = DownloadedStudy(self.study_id, self._opened["study_id"], self._opened["report"], self._folder)
            self.result = add_batch_study(self.scene, study)
            self._finish("done", f"{len(study.report['lesions'])} lesions")

    def _finished_work(self, future) -> None:
        if self.stage == "open":
            self._opened = future.result()
            self._enter("download", "downloading the CT, PET and lesions")
            self._transfer(*[("download_volume", self._opened["study_id"], which, self._folder / f"{which}.nrrd")
                             for which in ("ct", "pet")],
                           ("download_batch_labelmap", self.batch_id, self.study_id, self._folder / "lesions.nrrd"))
        elif self.stage == "download":
            future.result()
            self._enter("build", "making the nodes")

