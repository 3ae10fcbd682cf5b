"""Response assessments through the HTTP service: two stored studies, each with the labelmap of a
finished job or one the client sent (:mod:`.labelmaps`) → registration, matching, reference
regions and the criteria, in a worker thread.

One assessment runs at a time (registration takes the CPU for a minute or so); at most
``MAX_WAITING`` wait. Both studies are pinned in the memory budget while their assessment is
queued or running. Cancel stops the registration between iterations. A finished assessment keeps its registration,
so a re-assessment of the same two studies (the reader changed targets, references or segments)
can reuse it instead of registering again, and the transform can be downloaded.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field


from ..errors import CancelledError, InputError
from ..response.assess import ReaderInputs, assess_response
from ..response.registration import Registration, register_follow_up
from ..response.timepoint import measured
from .holdings import Refusal
from .outcomes import outcome_of
from .jobs import JobQueue
from .labelmaps import LabelmapStore
from .studies import StudyStore
from .uploads import read_image_bytes

log = logging.getLogger("attumamba.server")
FINISHED = ("done", "failed", "cancelled")
MAX_WAITING = 4
WHEN = ("baseline", "follow_up")


@dataclass
class ResponseRun:
    response_id: str
    studies: dict[str, str]           # when -> study id
    sources: dict[str, tuple[str, str]]   # when -> ("job", job id) or ("labelmap", labelmap id): the lesions
    reader: ReaderInputs
    deformable: bool
    reused: Registration | None = None    # a finished assessment's registration of the same two studies
    state: str = "queued"
    progress: float = 0.0
    stage: str = "queued"
    message: str = ""
    created: float = field(default_factory=time.time)
    result: dict | None = None
    registration: Registration | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    def status(self) -> dict:
        return {"response_id": self.response_id, "state": self.state, "progress": round(self.progress, 4),
                "stage": self.stage, "message": self.message, "studies": self.studies,
                "jobs": self._ids("job"), "labelmaps": self._ids("labelmap"), "created": self.created,
                "response": self.result}

    def _ids(self, kind: str) -> dict[str, str]:
        return {when: source_id for when, (source_kind, source_id) in self.sources.items() if source_kind == kind}


class ResponseRuns:
    def __init__(self, studies: StudyStore, jobs: JobQueue, labelmaps: LabelmapStore | None = None, keep: int = 64):
        self.studies, self.jobs, self.keep = studies, jobs, keep
        self.labelmaps = labelmaps or LabelmapStore(studies.holdings)
        self._runs: dict[str, ResponseRun] = {}
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._work, name="attumamba-response", daemon=True)
        self._worker.start()

    def submit(self, studies: dict[str, str], sources: dict[str, tuple[str, str]], reader: ReaderInputs,
               deformable: bool, reuse_registration: str | None = None) -> ResponseRun:
        """Queue an assessment; refused at once when a study, a labelmap or a reused registration is missing."""
        for when in WHEN:
            kind, source_id = sources[when]
            owner = self._owner(kind, source_id)
            if owner is not None and owner != studies[when]:
                raise InputError(f"{kind} {source_id} belongs to study {owner}, not the {when} study {studies[when]}")
            self._labels_bytes(kind, source_id)   # 404 / 409 / 410 with the reason
        reused = self._registration_of(reuse_registration, studies) if reuse_registration else None
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
            run = ResponseRun(uuid.uuid4().hex, dict(studies), dict(sources), reader, deformable, reused)
            self._runs[run.response_id] = run
            self._forget_old()
        self._queue.put(run)
        return run

    def get(self, response_id: str) -> ResponseRun | None:
        return self._runs.get(response_id)

    def registration(self, response_id: str) -> Registration:
        """A finished assessment's registration (for its transform); 409 until it is done."""
        run = self.get(response_id)
        if run is None:
            raise Refusal(404, "unknown response", f"no response assessment {response_id!r}")
        if run.state != "done" or run.registration is None:
            raise Refusal(409, "response not done", f"response assessment {response_id} is {run.state}; poll "
                          f"GET /v1/responses/{response_id} until done")
        return run.registration

    def _registration_of(self, response_id: str, studies: dict[str, str]) -> Registration:
        registration = self.registration(response_id)
        if self._runs[response_id].studies != studies:
            raise InputError(f"response assessment {response_id} registered other studies "
                             f"({self._runs[response_id].studies}); reuse a registration of the same two studies")
        return registration

    def _owner(self, kind: str, source_id: str) -> str | None:
        if kind == "job":
            job = self.jobs.get(source_id)
            return job.study_id if job is not None else None
        return self.labelmaps.require(source_id).study_id

    def _labels_bytes(self, kind: str, source_id: str) -> bytes:
        if kind == "job":
            return self.jobs.result(source_id).labelmap_nrrd
        return self.labelmaps.require(source_id).labelmap_nrrd

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
                run.state, run.message = outcome_of(lambda: self._run(run), log, f"response {run.response_id}")
                run.stage = run.state
                if run.state == "done":
                    run.progress = 1.0
            finally:
                for when in WHEN:
                    self.studies.unpin(run.studies[when])

    def _run(self, run: ResponseRun) -> str:
        if run.cancel_requested.is_set():
            raise CancelledError("cancelled before it started")
        run.state = "running"
        run.result = self._assess(run)
        return _summary(run.result)

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
            kind, source_id = run.sources[when]
            labels = read_image_bytes(self._labels_bytes(kind, source_id))
            points[when] = measured(when, study.ct, study.pet, labels, f"study {study.study_id}, {kind} {source_id}",
                                    _patient(study.meta))
        registration = run.reused or register_follow_up(
            points["baseline"].ct, points["follow_up"].ct, deformable=run.deformable,
            progress=lambda f, s: say(0.1 + 0.8 * f, s), should_cancel=run.cancel_requested.is_set)
        checkpoint(0.92, "matching lesions and applying the criteria")
        result = assess_response(points["baseline"], points["follow_up"], run.reader, registration=registration)
        run.registration = registration
        if run.reused is not None:
            result["registration"]["notes"] = [*result["registration"]["notes"], "reused from an earlier assessment"]
        return result

    def _forget_old(self) -> None:
        finished = [rid for rid, run in self._runs.items() if run.state in FINISHED]
        for response_id in finished[: max(0, len(finished) - self.keep)]:
            del self._runs[response_id]


def _patient(meta: dict) -> tuple | None:
    """(sex, height m, weight kg) from an upload's meta ``{"patient": {"sex", "height_m", "weight_kg"}}``."""
    patient = meta.get("patient") if isinstance(meta, dict) else None
    if not isinstance(patient, dict):
        return None
    return patient.get("sex"), patient.get("height_m"), patient.get("weight_kg")


def _summary(result: dict) -> str:
    return "; ".join(f"{c['system']}: {c['category']}" for c in result["categories"].values() if c)

