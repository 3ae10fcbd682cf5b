"""The job queue: one worker thread per device, progress and cancellation, results kept for a while.

A GPU (or the CPU) runs one segmentation at a time, so jobs for a device queue behind each
other; a cancelled queued job never starts, a cancelled running one stops at the next tile.
Loaded models are cached per (model, device, TTA) so the second job does not pay for loading.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import SimpleITK as sitk

from ..errors import CancelledError, InputError
from ..inference import SegmentOptions, Segmenter, resolve_model, run_study
from .studies import Study

log = logging.getLogger("attumamba.server")

STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")


@dataclass
class Job:
    job_id: str
    study: Study
    model: str | None
    device: str
    tta: bool
    options: SegmentOptions
    state: str = "queued"
    progress: float = 0.0
    stage: str = "queued"
    message: str = ""
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    instances: sitk.Image | None = None
    report: dict | None = None
    timings: dict = field(default_factory=dict)
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    def status(self) -> dict:
        return {"job_id": self.job_id, "study_id": self.study.study_id, "model": self.model, "state": self.state,
                "progress": round(self.progress, 4), "stage": self.stage, "message": self.message,
                "created": self.created, "started": self.started, "finished": self.finished, "timings": self.timings}


class SegmenterCache:
    """Loaded models by (model, device, tta); loading happens in the worker, never in a request."""

    def __init__(self, factory: Callable[[str | None, str, bool], Segmenter] | None = None):
        self._factory = factory or (lambda model, device, tta: Segmenter(resolve_model(model), device, tta=tta))
        self._cache: dict[tuple, Segmenter] = {}
        self._lock = threading.Lock()

    def get(self, model: str | None, device: str, tta: bool) -> Segmenter:
        key = (model, device, tta)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self._factory(model, device, tta)
            return self._cache[key]


class JobQueue:
    """Submit, inspect and cancel jobs; finished jobs are kept (newest ``keep_finished``) for download."""

    def __init__(self, segmenters: SegmenterCache, devices: tuple[str, ...] = ("cpu",), keep_finished: int = 32):
        self.segmenters, self.keep_finished = segmenters, keep_finished
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._queues = {device: queue.Queue() for device in devices}
        self._workers = [threading.Thread(target=self._work, args=(device,), name=f"attumamba-{device}", daemon=True)
                         for device in devices]
        for worker in self._workers:
            worker.start()

    def submit(self, study: Study, model: str | None, device: str, tta: bool, options: SegmentOptions) -> Job:
        if device not in self._queues:
            raise InputError(f"device {device!r} is not served here; this backend runs {', '.join(self._queues)}")
        job = Job(uuid.uuid4().hex, study, model, device, tta, options)
        with self._lock:
            self._jobs[job.job_id] = job
            self._forget_old()
        self._queues[device].put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        job = self.get(job_id)
        if job is not None and job.state not in FINISHED:
            job.cancel_requested.set()
            if job.state == "queued":
                self._finish(job, "cancelled", "cancelled before it started")
        return job

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
            if job.state != "queued":
                continue  # cancelled while waiting
            job.state, job.started, job.stage = "running", time.time(), "loading model"
            try:
                segmenter = self.segmenters.get(job.model, device, job.tta)
                if job.cancel_requested.is_set():
                    raise CancelledError("segmentation cancelled")
                result = run_study(segmenter, job.study.ct, job.study.pet, job.options,
                                   progress=lambda fraction, stage: self._progress(job, fraction, stage),
                                   should_cancel=job.cancel_requested.is_set)
                job.instances, job.report, job.timings = result.instances, result.report, result.timings
                job.progress = 1.0
                self._finish(job, "done", f"{result.report['totals']['n_lesions']} lesions")
            except CancelledError:
                self._finish(job, "cancelled", "cancelled on request")
            except InputError as error:
                self._finish(job, "failed", str(error))
            except Exception as error:  # a worker must survive anything a job does
                log.exception("job %s failed", job.job_id)
                self._finish(job, "failed", f"internal error ({type(error).__name__}); see the server log")

    @staticmethod
    def _progress(job: Job, fraction: float, stage: str) -> None:
        job.progress, job.stage = 0.97 * fraction, stage  # the last 3 %: lesion analysis

    @staticmethod
    def _finish(job: Job, state: str, message: str) -> None:
        job.state, job.message, job.finished = state, message, time.time()
        job.stage = state

    def _forget_old(self) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if job.state in FINISHED]
        for job_id in finished[: max(0, len(finished) - self.keep_finished)]:
            del self._jobs[job_id]
