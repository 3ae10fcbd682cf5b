"""One segmentation run as a small state machine: export -> upload -> submit -> segment -> download -> build.

The GUI calls :meth:`SegmentationRun.step` from a timer, so a step never waits: the volumes go
up and the labelmap comes down in a helper process (:mod:`.transfers`), other requests and disk
work go to one worker thread (a daemon: quitting Slicer abandons it at once), and the step only
looks whether they finished. MRML is touched only in :meth:`step` (the caller's thread):
reading the volumes at the start and building the nodes at the end, which removes everything
it made if it fails. A run that fails or is cancelled therefore leaves the scene as it was.
Scripts use :meth:`wait`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from .client import BackendClient, BackendError
from .results import LesionResult, build_result
from .staged import FINAL_STATES, RunCancelled, StagedWork  # noqa: F401 (also this module's API)
from .volumes import volume_array, write_image

#: Overall progress at the start of each stage; the segment stage spans its job's progress.
STAGE_START = {"export": 0.0, "upload": 0.03, "submit": 0.10, "segment": 0.12, "download": 0.90, "build": 0.95}
ProgressCallback = Callable[[str, float, str], None]


class SegmentationRun(StagedWork):
    """Segment one CT/PET pair on the backend and turn the result into nodes.

    ``on_progress(stage, progress 0..1, message)`` is called from :meth:`step` whenever
    something changes; the final stage is ``done``, ``failed`` or ``cancelled``.
    """

    STAGE_START = STAGE_START
    WHAT = "the run"

    def __init__(self, client: BackendClient, scene, ct_node, pet_node, *, model: str | None = None,
                 device: str | None = None, tta: bool = False, options: dict | None = None, name: str | None = None,
                 replace=None, on_progress: ProgressCallback | None = None, poll_interval_s: float = 0.5):
        if ct_node is None or pet_node is None:
            raise ValueError("choose both a CT and a PET volume")
        super().__init__("export", "starting", on_progress, "attumamba-run")
        self.client, self.scene, self.ct_node, self.pet_node = client, scene, ct_node, pet_node
        self.model, self.device, self.tta, self.options = model, device, tta, dict(options or {})
        self.name, self.replace, self.poll_interval_s = name, replace, poll_interval_s
        self.result: LesionResult | None = None
        self.study_id: str | None = None
        self.job_id: str | None = None
        self._report: dict | None = None
        self._next_poll = 0.0

    # --- the stages ----------------------------------------------------------------------------
    def _start_work(self) -> None:
        if self.stage == "export":
            self._say(STAGE_START["export"], "writing the volumes")
            self._folder = Path(tempfile.mkdtemp(prefix="attumamba-run-"))
            volumes = [volume_array(node) for node in (self.ct_node, self.pet_node)]  # MRML: this thread
            self._run(self._write_volumes, volumes)
        elif self.stage == "upload":
            self._transfer(("upload_study", self._folder / "ct.nrrd", self._folder / "pet.nrrd",
                            {"source": "AttUMambaSeg", "ct": self.ct_node.GetName(), "pet": self.pet_node.GetName()}))
        elif self.stage == "submit":
            self._run(lambda: self.client.submit(self.study_id, self.model, device=self.device, tta=self.tta,
                                                 options=self.options))
        elif self.stage == "segment":
            if time.monotonic() >= self._next_poll:
                self._next_poll = time.monotonic() + self.poll_interval_s
                self._run(self.client.job, self.job_id)
        elif self.stage == "download":  # the labelmap, then its report (the transfer's result)
            self._transfer(("download_labelmap", self.job_id, self._folder / "lesions.nrrd"), ("lesions", self.job_id))
        elif self.stage == "build":
            self.result = build_result(self.scene, self.ct_node, self._folder / "lesions.nrrd", self._report,
                                       pet_node=self.pet_node, study_id=self.study_id, name=self.name,
                                       replace=self.replace, reference_node=self._reference_node())
            count = len(self.result.report["lesions"])
            self._finish("done", f"{count} lesion{'s' if count != 1 else ''}")

    def _finished_work(self, future: Future) -> None:
        value = future.result()
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
            self._say(fraction, status.get("stage") or state or "running")

    def _reference_node(self):
        """The volume whose grid the backend labelled on (``options["reference"]``, the CT's by default)."""
        return self.pet_node if str(self.options.get("reference", "ct")).lower() == "pet" else self.ct_node

    # --- worker side (no MRML here) ----------------------------------------------------------
    def _write_volumes(self, volumes) -> None:
        for (array, ijk_to_ras), name in zip(volumes, ("ct.nrrd", "pet.nrrd")):
            write_image(array, ijk_to_ras, self._folder / name, compress=False)

    def _cancel_backend(self, pending: Future | None) -> None:
        job_id = self.job_id
        if job_id is None and pending is not None and pending.done() and pending.exception() is None:
            value = pending.result()
            job_id = value.get("job_id") if isinstance(value, dict) else None  # submitted as we cancelled
        if job_id is not None:
            try:
                self.client.cancel(job_id)
            except BackendError:
                pass  # already finished or gone: nothing left to stop
