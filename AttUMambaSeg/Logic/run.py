"""One segmentation run as a small state machine: export -> upload -> submit -> segment -> download -> build.

The GUI calls :meth:`SegmentationRun.step` from a timer, so a step never waits: network and
disk work go to one worker thread (a daemon: quitting Slicer abandons it at once), and the step
only looks whether it finished. MRML is touched only in :meth:`step` (the caller's thread):
reading the volumes at the start and building the nodes at the end, which removes everything
it made if it fails. A run that fails or is cancelled therefore leaves the scene as it was.
Scripts use :meth:`wait`.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from .client import BackendClient, BackendError
from .results import LesionResult, build_result
from .volumes import volume_array, write_image
from .workers import SerialWorker

#: Overall progress at the start of each stage; the segment stage spans its job's progress.
STAGE_START = {"export": 0.0, "upload": 0.03, "submit": 0.10, "segment": 0.12, "download": 0.90, "build": 0.95}
FINAL_STATES = ("done", "failed", "cancelled")
ProgressCallback = Callable[[str, float, str], None]


class RunCancelled(RuntimeError):
    """The run was cancelled (by the user, or because :meth:`SegmentationRun.wait` timed out)."""


class SegmentationRun:
    """Segment one CT/PET pair on the backend and turn the result into nodes.

    ``on_progress(stage, progress 0..1, message)`` is called from :meth:`step` whenever
    something changes; the final stage is ``done``, ``failed`` or ``cancelled``.
    """

    def __init__(self, client: BackendClient, scene, ct_node, pet_node, *, model: str | None = None,
                 device: str | None = None, tta: bool = False, options: dict | None = None, name: str | None = None,
                 replace=None, on_progress: ProgressCallback | None = None, poll_interval_s: float = 0.5):
        if ct_node is None or pet_node is None:
            raise ValueError("choose both a CT and a PET volume")
        self.client, self.scene, self.ct_node, self.pet_node = client, scene, ct_node, pet_node
        self.model, self.device, self.tta, self.options = model, device, tta, dict(options or {})
        self.name, self.replace, self.on_progress, self.poll_interval_s = name, replace, on_progress, poll_interval_s
        self.state, self.stage, self.progress, self.message = "running", "export", 0.0, "starting"
        self.error: Exception | None = None
        self.result: LesionResult | None = None
        self.study_id: str | None = None
        self.job_id: str | None = None
        self._report: dict | None = None
        self._pending: Future | None = None
        self._next_poll = 0.0
        self._folder: Path | None = None  # made when the run starts, removed when it ends
        self._worker = SerialWorker("attumamba-run")  # daemon: quitting never waits for it

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    # --- driving -----------------------------------------------------------------------------
    def step(self) -> bool:
        """Advance if the current piece of work is done; True while the run goes on."""
        if self.finished:
            return False
        try:
            if self._pending is not None:
                if not self._pending.done():
                    return True
                future, self._pending = self._pending, None
                self._finished_work(future.result())
            else:
                self._start_work()
        except Exception as error:  # noqa: BLE001 - any failure ends the run with its message; no nodes made
            self._finish("failed", str(error) or type(error).__name__, error)
        return not self.finished

    def wait(self, timeout_s: float = 3600.0, poll_s: float = 0.05) -> LesionResult:
        """Run to the end in this thread (scripts, tests); the result, or the run's error."""
        deadline = time.monotonic() + timeout_s
        while self.step():
            if time.monotonic() > deadline:
                self.cancel()
                raise RunCancelled(f"the run did not finish within {timeout_s:.0f} s and was cancelled")
            time.sleep(poll_s)
        if self.state == "cancelled":
            raise RunCancelled(self.message)
        if self.state == "failed":
            raise self.error
        return self.result

    def cancel(self) -> None:
        """Stop now: the backend job is cancelled in the background, no nodes are made."""
        if self.finished:
            return
        pending = self._pending
        self._worker.submit(self._cancel_backend_job, pending)
        self._finish("cancelled", "cancelled")

    # --- the stages ----------------------------------------------------------------------------
    def _start_work(self) -> None:
        if self.stage == "export":
            self._report_progress(STAGE_START["export"], "writing the volumes")
            self._folder = Path(tempfile.mkdtemp(prefix="attumamba-run-"))
            volumes = [volume_array(node) for node in (self.ct_node, self.pet_node)]  # MRML: this thread
            self._run(self._write_volumes, volumes)
        elif self.stage == "upload":
            self._run(self.client.upload_study, self._folder / "ct.nrrd", self._folder / "pet.nrrd",
                      {"source": "AttUMambaSeg", "ct": self.ct_node.GetName(), "pet": self.pet_node.GetName()})
        elif self.stage == "submit":
            self._run(lambda: self.client.submit(self.study_id, self.model, device=self.device, tta=self.tta,
                                                 options=self.options))
        elif self.stage == "segment":
            if time.monotonic() >= self._next_poll:
                self._next_poll = time.monotonic() + self.poll_interval_s
                self._run(self.client.job, self.job_id)
        elif self.stage == "download":
            self._run(self._download)
        elif self.stage == "build":
            self.result = build_result(self.scene, self.ct_node, self._folder / "lesions.nrrd", self._report,
                                       pet_node=self.pet_node, study_id=self.study_id, name=self.name,
                                       replace=self.replace, reference_node=self._reference_node())
            count = len(self.result.report["lesions"])
            self._finish("done", f"{count} lesion{'s' if count != 1 else ''}")

    def _finished_work(self, value) -> None:
        if self.stage == "export":
            self._enter("upload", "sending the volumes")
        elif self.stage == "upload":
            self.study_id = value["study_id"]
            self._enter("submit", "starting the job")
        elif self.stage == "submit":
            self.job_id = value["job_id"]
            self._enter("segment", "queued")
        elif self.stage == "segment":
            self._job_status(value)
        elif self.stage == "download":
            self._report = value
            self._enter("build", "making the segments")

    def _job_status(self, status: dict) -> None:
        state = status.get("state")
        if state == "done":
            self._enter("download", "downloading the result")
        elif state == "failed":
            raise BackendError(f"the backend job failed: {status.get('message') or 'no reason given'}")
        elif state == "cancelled":
            self._finish("cancelled", "the backend job was cancelled")
        else:
            span = STAGE_START["download"] - STAGE_START["segment"]
            fraction = STAGE_START["segment"] + span * float(status.get("progress") or 0.0)
            self._report_progress(fraction, status.get("stage") or state or "running")

    def _reference_node(self):
        """The volume whose grid the backend labelled on (``options["reference"]``, the CT's by default)."""
        return self.pet_node if str(self.options.get("reference", "ct")).lower() == "pet" else self.ct_node

    # --- worker side (no MRML here) ----------------------------------------------------------
    def _write_volumes(self, volumes) -> None:
        for (array, ijk_to_ras), name in zip(volumes, ("ct.nrrd", "pet.nrrd")):
            write_image(array, ijk_to_ras, self._folder / name, compress=False)

    def _download(self) -> dict:
        self.client.download_labelmap(self.job_id, self._folder / "lesions.nrrd")
        return self.client.lesions(self.job_id)

    def _cancel_backend_job(self, pending: Future | None) -> None:
        job_id = self.job_id
        if job_id is None and pending is not None and pending.done() and pending.exception() is None:
            value = pending.result()
            job_id = value.get("job_id") if isinstance(value, dict) else None  # submitted as we cancelled
        if job_id is not None:
            try:
                self.client.cancel(job_id)
            except BackendError:
                pass  # already finished or gone: nothing left to stop

    # --- bookkeeping ---------------------------------------------------------------------------
    def _run(self, function, *args) -> None:
        self._pending = self._worker.submit(function, *args)

    def _enter(self, stage: str, message: str) -> None:
        self.stage = stage
        self._report_progress(STAGE_START[stage], message)

    def _report_progress(self, progress: float, message: str) -> None:
        self.progress, self.message = max(self.progress, progress), message
        if self.on_progress is not None:
            self.on_progress(self.stage, self.progress, message)

    def _finish(self, state: str, message: str, error: Exception | None = None) -> None:
        self.state, self.stage, self.error = state, state, error
        if state == "done":
            self.progress = 1.0
        self._pending = None
        if self._folder is not None:
            self._worker.submit(shutil.rmtree, self._folder, True)  # after any work still queued
        self._worker.shutdown(wait=False)
        self._report_progress(self.progress, message)
