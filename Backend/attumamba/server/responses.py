"""Response assessments through the HTTP service: two stored studies and their finished jobs'
labelmaps → registration, matching, reference regions and the criteria, in a worker thread.

One assessment runs at a time (registration takes the CPU for a minute or so); at most
``MAX_WAITING`` wait. Both studies are pinned in the memory budget while their assessment is
queued or running. Cancel stops the registration between iterations.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field

import SimpleITK as sitk

from ..errors import CancelledError, InputError
from ..response.assess import ReaderInputs, assess_response
from ..response.registration import register_follow_up
from ..response.timepoint import measured
from .holdings import Refusal
from .jobs import JobQueue
from .studies import StudyStore

log = logging.getLogger("attumamba.server")
FINISHED = ("done", "failed", "cancelled")
MAX_WAITING = 4
WHEN = ("baseline", "follow_up")


@dataclass
class ResponseRun:
    response_id: str
    studies: dict[str, str]           # when -> study id
    jobs: dict[str, str]              # when -> job id (its labelmap is the lesions)
    reader: ReaderInputs
    deformable: bool
    state: str = "queued"
    progress: float = 0.0
    stage: str = "queued"
    message: str = ""
    created: float = field(default_factory=time.time)
    result: dict | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    def status(self) -> dict:
        return {"response_id": self.response_id, "state": self.state, "progress": round(self.progress, 4),
                "stage": self.stage, "message": self.message, "studies": self.studies, "jobs": self.jobs,
                "created": self.created, "response": self.result}


class ResponseRuns:
    def __init__(self, studies: StudyStore, jobs: JobQueue, keep: int = 64):
        self.studies, self.jobs, self.keep = studies, jobs, keep
        self._runs: dict[str, ResponseRun] = {}
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._work, name="attumamba-response", daemon=True)
        self._worker.start()

    def submit(self, studies: dict[str, str], jobs: dict[str, str], reader: ReaderInputs, deformable: bool) -> ResponseRun:
        """Queue an assessment; refused at once when a study or a job result is missing."""
        for when in WHEN:
            job = self.jobs.get(jobs[when])
            if job is not None and job.study_id != studies[when]:
                raise InputError(f"job {jobs[when]} segmented study {job.study_id}, not the {when} study "
                                 f"{studies[when]}")
            self.jobs.result(jobs[when])          # 404 / 409 / 410 with the reason
        with self._lock:
            waiting = sum(run.state == "queued" for run in self._runs.values())
            if waiting >= MAX_WAITING:
                raise Refusal(429, "too many assessments", f"{waiting} response assessments are waiting; retry "
                              "when one has finished", retry_after_s=30)
            pinned = []
            try:
                for when in WHEN:
                    self.studies.require(studies[when], pin=True)
                    pinned.append(studies[when])
            except BaseException:
                for study_id in pinned:
                    self.studies.unpin(study_id)
                raise
            run = ResponseRun(uuid.uuid4().hex, dict(studies), dict(jobs), reader, deformable)
            self._runs[run.response_id] = run
            self._forget_old()
        self._queue.put(run)
        return run

    def get(self, response_id: str) -> ResponseRun | None:
        return self._runs.get(response_id)

    def cancel(self, response_id: str) -> ResponseRun | None:
        run = self.get(response_id)
        if run is not None and run.state not in FINISHED:
            run.cancel_requested.set()
        return run

    def shutdown(self) -> None:
        for run in list(self._runs.values()):
            self.cancel(run.response_id)
        self._queue.put(None)
        self._worker.join(10)

    def _work(self) -> None:
        while (run := self._queue.get()) is not None:
            try:
                if run.cancel_requested.is_set():
                    raise CancelledError("cancelled before it started")
                run.state = "running"
                run.result = self._assess(run)
                run.state, run.progress, run.stage, run.message = "done", 1.0, "done", _summary(run.result)
            except CancelledError as error:
                run.state, run.stage, run.message = "cancelled", "cancelled", str(error)
            except (InputError, Refusal) as error:
                run.state, run.stage, run.message = "failed", "failed", str(error)
            except Exception as error:  # the worker must survive anything an assessment does
                log.exception("response %s failed", run.response_id)
                run.state, run.stage = "failed", "failed"
                run.message = f"internal error ({type(error).__name__}); see the server log"
            finally:
                for when in WHEN:
                    self.studies.unpin(run.studies[when])

    def _assess(self, run: ResponseRun) -> dict:
        def say(fraction: float, stage: str) -> None:
            run.progress, run.stage = fraction, stage

        def checkpoint(fraction: float, stage: str) -> None:   # between steps, never inside ITK's callbacks
            say(fraction, stage)
            if run.cancel_requested.is_set():
                raise CancelledError("cancelled")

        points = {}
        for n, when in enumerate(WHEN):
            checkpoint(0.05 * n, f"measuring the {when.replace('_', '-')}")
            study = self.studies.require(run.studies[when])
            labels = _image(self.jobs.result(run.jobs[when]).labelmap_nrrd)
            points[when] = measured(when, study.ct, study.pet, labels, f"study {study.study_id}, job {run.jobs[when]}",
                                    _patient(study.meta))
        registration = register_follow_up(points["baseline"].ct, points["follow_up"].ct, deformable=run.deformable,
                                          progress=lambda f, s: say(0.1 + 0.8 * f, s),
                                          should_cancel=run.cancel_requested.is_set)
        checkpoint(0.92, "matching lesions and applying the criteria")
        return assess_response(points["baseline"], points["follow_up"], run.reader, registration=registration)

    def _forget_old(self) -> None:
        finished = [rid for rid, run in self._runs.items() if run.state in FINISHED]
        for response_id in finished[: max(0, len(finished) - self.keep)]:
            del self._runs[response_id]


def _image(nrrd: bytes) -> sitk.Image:
    from .uploads import read_image_bytes

    return read_image_bytes(nrrd)


def _patient(meta: dict) -> tuple | None:
    """(sex, height m, weight kg) from an upload's meta ``{"patient": {"sex", "height_m", "weight_kg"}}``."""
    patient = meta.get("patient") if isinstance(meta, dict) else None
    if not isinstance(patient, dict):
        return None
    return patient.get("sex"), patient.get("height_m"), patient.get("weight_kg")


def _summary(result: dict) -> str:
    return "; ".join(f"{c['system']}: {c['category']}" for c in result["categories"].values() if c)

