"""The job queue: one worker thread per device, a bounded queue, progress and cancellation.

A GPU (or the CPU) runs one segmentation at a time, so jobs for a device queue behind each
other (at most ``Limits.max_queued_jobs``; more get a 429 and ``Retry-After``); a cancelled
queued job never starts, a cancelled running one stops at the next tile. A queued or running
job pins its study in the store; a finished job's result (the labelmap as the NRRD bytes a
client downloads, and the report) is held in the same byte budget as the studies, so it can
expire like them. Models come from the process-wide :data:`LOADED_MODELS`, which batch runs
share: the same model is never loaded twice onto a device.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

from ..errors import CancelledError, InputError
from ..inference import SegmentOptions, run_study
from ..inference.loaded_models import LoadedModels
from .holdings import RETRY_AFTER_S, Refusal
from .outcomes import outcome_of
from .studies import Study, StudyStore
from .uploads import image_bytes

log = logging.getLogger("attumamba.server")

STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")


@dataclass
class JobResult:
    labelmap_nrrd: bytes
    report: dict

    @property
    def nbytes(self) -> int:
        return len(self.labelmap_nrrd) + len(json.dumps(self.report))


@dataclass
class Job:
    job_id: str
    study_id: str
    model: str | None
    device: str
    tta: bool
    options: SegmentOptions
    study: Study | None = None   # only while queued or running (pinned in the store meanwhile)
    state: str = "queued"
    progress: float = 0.0
    stage: str = "queued"
    message: str = ""
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    timings: dict = field(default_factory=dict)
    result: str = ""             # of a done job: "held", or "expired" (dropped from memory)
    result_note: str = ""        # why a result was never held
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    def status(self) -> dict:
        return {"job_id": self.job_id, "study_id": self.study_id, "model": self.model, "state": self.state,
                "progress": round(self.progress, 4), "stage": self.stage, "message": self.message,
                "created": self.created, "started": self.started, "finished": self.finished, "timings": self.timings,
                "result": self.result or None}


class JobQueue:
    """Submit, inspect and cancel jobs; the newest ``keep_finished`` finished jobs stay listed."""

    def __init__(self, segmenters: LoadedModels, studies: StudyStore, devices: tuple[str, ...] = ("cpu",),
                 keep_finished: int = 1000):
        self.segmenters, self.studies, self.keep_finished = segmenters, studies, keep_finished
        self.max_queued = studies.limits.max_queued_jobs
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._queues = {device: queue.Queue() for device in devices}
        self._workers = [threading.Thread(target=self._work, args=(device,), name=f"attumamba-{device}", daemon=True)
                         for device in devices]
        for worker in self._workers:
            worker.start()

    def submit(self, study_id: str, model: str | None, device: str, tta: bool, options: SegmentOptions) -> Job:
        if device not in self._queues:
            raise InputError(f"device {device!r} is not served here; this backend runs {', '.join(self._queues)}")
        with self._lock:
            waiting = self._count(device, "queued")
            if waiting >= self.max_queued:
                raise Refusal(429, "too many jobs", f"{waiting} jobs already wait for the {device} (the most this "
                              "service queues); try again when some have finished", RETRY_AFTER_S)
            job = Job(uuid.uuid4().hex, study_id, model, device, tta, options,
                      study=self.studies.require(study_id, pin=True))
            self._jobs[job.job_id] = job
            self._forget_old()
        self._queues[device].put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None and job.result == "held" and not self.studies.holdings.holds(("result", job_id)):
            job.result = "expired"
        return job

    def result(self, job_id: str) -> JobResult:
        """A done job's result, or a refusal that says why there is none (unknown, not done, expired)."""
        job = self.get(job_id)
        if job is None:
            raise Refusal(404, "unknown job", f"no job {job_id!r}")
        if job.state != "done":
            raise Refusal(409, "job not done", f"job {job_id} is {job.state}; poll GET /v1/jobs/{job_id} until done")
        result = self.studies.holdings.get(("result", job_id))
        if result is None:
            job.result = "expired"
            reason = self.studies.holdings.why_gone(("result", job_id)) or job.result_note or "it was dropped"
            raise Refusal(410, "result expired", f"the result of job {job_id} is no longer held: {reason}; "
                                                 "run the job again (POST /v1/jobs)")
        return result

    def cancel(self, job_id: str) -> Job | None:
        job = self.get(job_id)
        if job is None:
            return None
        job.cancel_requested.set()
        with self._lock:
            queued = job.state == "queued"
            if queued:
                job.state = "cancelling"  # the worker skips it; only this thread finishes it
        if queued:
            self._finish(job, "cancelled", "cancelled before it started")
        return job

    def counts(self) -> dict:
        with self._lock:
            return {device: {"queued": self._count(device, "queued"), "running": self._count(device, "running")}
                    for device in self._queues}

    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel every unfinished job and stop the workers."""
        with self._lock:
            unfinished = [job for job in self._jobs.values() if job.state not in FINISHED]
        for job in unfinished:
            self.cancel(job.job_id)
        for q in self._queues.values():
            q.put(None)
        for worker in self._workers:
            worker.join(timeout)

    def _work(self, device: str) -> None:
        while (job := self._queues[device].get()) is not None:
            with self._lock:
                if job.state != "queued":
                    continue  # cancelled while waiting
                job.state, job.started, job.stage = "running", time.time(), "loading model"
            results = []

            def segment(job=job) -> str:
                results.append(self._segment(job, device))
                return f"{results[0].report['totals']['n_lesions']} lesions"

            state, message = outcome_of(segment, log, f"job {job.job_id}", cancelled="cancelled on request")
            self._finish(job, state, message, results[0] if state == "done" else None)

    def _segment(self, job: Job, device: str) -> JobResult:
        def waiting() -> None:
            job.stage = "waiting for the device (a batch run is using it)"

        with self.segmenters.using(job.model, device, job.tta, should_cancel=job.cancel_requested.is_set,
                                   on_wait=waiting) as segmenter:
            if job.cancel_requested.is_set():
                raise CancelledError("segmentation cancelled")
            job.stage = "segmenting"
            outcome = run_study(segmenter, job.study.ct, job.study.pet, job.options,
                                progress=lambda fraction, stage: self._progress(job, fraction, stage),
                                should_cancel=job.cancel_requested.is_set)
        job.timings = outcome.timings
        job.stage = "packing the result"
        return JobResult(image_bytes(outcome.instances), outcome.report)

    @staticmethod
    def _progress(job: Job, fraction: float, stage: str) -> None:
        job.progress, job.stage = 0.97 * fraction, stage  # the last 3 %: lesion analysis

    def _finish(self, job: Job, state: str, message: str, result: JobResult | None = None) -> None:
        """Unpin the study, hold the result (both before the job reads as finished), then finish."""
        study, job.study = job.study, None
        if study is not None:
            self.studies.unpin(study.study_id)
        if result is not None:
            try:
                self.studies.holdings.put(("result", job.job_id), result, result.nbytes, "the job's result")
                job.result = "held"
            except (InputError, Refusal) as error:
                job.result, job.result_note = "expired", str(error)
            job.progress = 1.0
        with self._lock:
            job.state, job.message, job.finished, job.stage = state, message, time.time(), state

    def _count(self, device: str, state: str) -> int:
        return sum(job.device == device and job.state == state for job in self._jobs.values())

    def _forget_old(self) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if job.state in FINISHED]
        for job_id in finished[: max(0, len(finished) - self.keep_finished)]:
            del self._jobs[job_id]
            self.studies.holdings.discard(("result", job_id), "its job was forgotten")
