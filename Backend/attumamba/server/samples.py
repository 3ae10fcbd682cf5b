"""``/v1/samples``: a synthetic whole-body PET/CT made on the backend, so a new user can try the module
before finding data.

``POST /v1/samples`` queues one study of :func:`attumamba.synth.generate_study` (profile ``compact``
by default: a few seconds on a CPU) and answers 202 with a ``sample_id``; ``GET /v1/samples/{id}``
gives its progress and, once done, the ``study`` it became in the study store, exactly as an
upload would have made it (``study_id``, grids, ``meta``), so its volumes come from
``GET /v1/studies/{id}/volumes/ct|pet`` and it segments and re-measures like any study.
``DELETE`` cancels between the generator's stages. One sample is made at a time (it takes the CPU)
and at most :data:`MAX_WAITING` wait; more are refused with 429 and ``Retry-After``. The stored
study counts against the service's memory budget like an upload.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from ..errors import CancelledError
from ..synth import generate_study
from .holdings import Refusal
from .outcomes import outcome_of
from .studies import StudyStore

log = logging.getLogger("attumamba.server")
FINISHED = ("done", "failed", "cancelled")
MAX_WAITING = 2
RETRY_AFTER_S = 10


class SampleRequest(BaseModel):
    """The ``synth`` command's choices for one study (its ``--tracer``, ``--profile``, ``--seed``)."""

    tracer: Literal["psma", "fdg", "mixed"] = "mixed"
    profile: Literal["compact", "full"] = "compact"
    seed: int = Field(0, ge=0, lt=2 ** 31)
    index: int = Field(0, ge=0, lt=10 ** 6)    # which study of the seed's series (--first-index)


@dataclass
class SampleRun:
    sample_id: str
    request: SampleRequest
    state: str = "queued"
    progress: float = 0.0
    stage: str = "queued"
    message: str = ""
    created: float = field(default_factory=time.time)
    study: dict | None = None        # the stored study's description, once done
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    def status(self) -> dict:
        return {"sample_id": self.sample_id, "state": self.state, "progress": round(self.progress, 4),
                "stage": self.stage, "message": self.message, "created": self.created,
                "request": self.request.model_dump(), "study": self.study}


class SampleRuns:
    """Samples by id; the newest ``keep`` finished ones stay listed."""

    def __init__(self, studies: StudyStore, keep: int = 64):
        self.studies, self.keep = studies, keep
        self._runs: dict[str, SampleRun] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="attumamba-sample")

    def submit(self, request: SampleRequest) -> SampleRun:
        with self._lock:
            unfinished = sum(run.state not in FINISHED for run in self._runs.values())
            if unfinished > MAX_WAITING:  # one being made, MAX_WAITING waiting
                raise Refusal(429, "too many samples", f"{unfinished} sample studies are being made or waiting; retry "
                              "when one has finished", retry_after_s=RETRY_AFTER_S)
            run = SampleRun(uuid.uuid4().hex, request)
            self._runs[run.sample_id] = run
            self._forget_old()
        self._executor.submit(self._make, run)
        return run

    def require(self, sample_id: str) -> SampleRun:
        run = self._runs.get(sample_id)
        if run is None:
            raise Refusal(404, "unknown sample", f"no sample {sample_id!r} (or the backend restarted since); "
                                                 "ask for a new one")
        return run

    def cancel(self, sample_id: str) -> SampleRun:
        run = self.require(sample_id)
        if run.state not in FINISHED:
            run.cancel_requested.set()
        return run

    def shutdown(self) -> None:
        for run in list(self._runs.values()):
            run.cancel_requested.set()   # a running generator stops at its next stage
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _make(self, run: SampleRun) -> None:
        def stage(fraction: float, text: str) -> None:
            if run.cancel_requested.is_set():
                raise CancelledError("cancelled")
            run.progress, run.stage = 0.95 * fraction, text

        def make() -> str:
            stage(0.0, "starting")
            run.state = "running"
            asked = run.request
            study = generate_study(asked.seed, asked.index, tracer=asked.tracer, profile=asked.profile, progress=stage)
            stage(1.0, "storing the study")
            stored = self.studies.add(study.ct, study.suv, _meta(study, asked))
            run.study = stored.describe()
            count = len(study.truth["lesions"])
            run.progress = 1.0
            return f"synthetic {study.tracer.upper()} PET/CT with {count} lesion{'s' if count != 1 else ''}"

        run.state, run.message = outcome_of(make, log, f"sample {run.sample_id}", cancelled="cancelled")
        run.stage = run.state

    def _forget_old(self) -> None:
        finished = [sid for sid, run in self._runs.items() if run.state in FINISHED]
        for sample_id in finished[: max(0, len(finished) - self.keep)]:
            del self._runs[sample_id]


def _meta(study, asked: SampleRequest) -> dict:
    """What the study store keeps about a sample: its origin, and the patient (SUL needs sex, height, weight)."""
    info = study.dicom_study
    return {"source": "synthetic sample", "case_id": study.case_id, "tracer": study.tracer, "profile": asked.profile,
            "seed": asked.seed, "index": asked.index, "n_lesions": len(study.truth["lesions"]),
            "patient": {"sex": info.patient_sex, "height_m": info.patient_size_m, "weight_kg": info.patient_weight_kg}}


def sample_routes(samples: SampleRuns, authorised) -> APIRouter:
    """The three routes, behind the app's token check ``authorised``."""
    router = APIRouter(prefix="/v1/samples", dependencies=[Depends(authorised)])

    @router.post("", status_code=202)
    def submit_sample(request: SampleRequest | None = None) -> dict:
        return samples.submit(request or SampleRequest()).status()

    @router.get("/{sample_id}")
    def sample_status(sample_id: str) -> dict:
        return samples.require(sample_id).status()

    @router.delete("/{sample_id}")
    def cancel_sample(sample_id: str) -> dict:
        return samples.cancel(sample_id).status()

    return router
