"""Batch runs through the HTTP service: a folder on the backend's machine → ``run_batch`` in a
worker thread, with per-study status for the Slicer module's Batch section.

Batches run one after another (each one loads its model once and uses the device fully); a
cancelled batch stops between tiles and keeps the studies it finished, which a later run with
``resume`` does not redo.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..batch import BatchSettings, run_batch
from ..batch.outputs import BatchFolder
from ..errors import InputError
from ..io.study_types import Study as FoundStudy
from .outcomes import outcome_of

log = logging.getLogger("attumamba.server")
FINISHED = ("done", "failed", "cancelled")


@dataclass
class StudyStatus:
    study_id: str
    state: str = "queued"        # queued, running, done, failed, kept (finished by an earlier run)
    progress: float = 0.0
    stage: str = ""
    n_lesions: int | None = None
    mtv_ml: float | None = None
    error: str = ""


@dataclass
class BatchRun:
    batch_id: str
    input_dir: Path
    output_dir: Path
    settings: BatchSettings
    resume: bool
    state: str = "queued"        # queued, running, done, failed, cancelled
    message: str = ""
    created: float = field(default_factory=time.time)
    studies: dict[str, StudyStatus] = field(default_factory=dict)
    found: dict[str, FoundStudy] = field(default_factory=dict)
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    def status(self) -> dict:
        studies = [asdict(s) for s in self.studies.values()]
        finished = sum(s["state"] in ("done", "failed", "kept") for s in studies)
        report = self.output_dir / "report.html"
        return {"batch_id": self.batch_id, "state": self.state, "message": self.message,
                "input_dir": str(self.input_dir), "output_dir": str(self.output_dir),
                "progress": round(finished / len(studies), 4) if studies else 0.0, "studies": studies,
                "report_html": str(report) if report.is_file() else None}


class BatchRuns:
    """Submit, inspect and cancel batch runs; one worker thread runs them in order."""

    def __init__(self):
        self._runs: dict[str, BatchRun] = {}
        self._queue: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="attumamba-batch", daemon=True)
        self._worker.start()

    def submit(self, input_dir: str, output_dir: str, settings: BatchSettings, resume: bool) -> BatchRun:
        source, target = Path(input_dir).expanduser(), Path(output_dir).expanduser()
        if not source.is_dir():
            raise InputError(f"{source} is not a folder on the backend's machine; give the folder holding the studies")
        if not target.is_absolute() or not source.is_absolute():
            raise InputError("give absolute paths for the study folder and the output folder")
        BatchFolder(target).refuse_earlier_results(resume, resume_hint="resume that run")
        run = BatchRun(uuid.uuid4().hex, source, target, settings, resume)
        self._runs[run.batch_id] = run
        self._queue.put(run)
        return run

    def get(self, batch_id: str) -> BatchRun | None:
        return self._runs.get(batch_id)

    def cancel(self, batch_id: str) -> BatchRun | None:
        run = self.get(batch_id)
        if run is not None and run.state not in FINISHED:
            run.cancel_requested.set()
            if run.state == "queued":
                run.state, run.message = "cancelled", "cancelled before it started"
        return run

    def shutdown(self, timeout: float = 10.0) -> None:
        for run in list(self._runs.values()):
            self.cancel(run.batch_id)
        self._queue.put(None)
        self._worker.join(timeout)

    def _work(self) -> None:
        while (run := self._queue.get()) is not None:
            if run.state != "queued":
                continue
            run.state, run.message = "running", "finding studies"

            def run_all(run=run) -> str:
                summary = run_batch(run.input_dir, run.output_dir, run.settings, resume=run.resume,
                                    on_found=lambda studies, todo, r=run: _found(r, studies, todo),
                                    on_progress=lambda sid, fraction, stage, r=run: _progress(r, sid, fraction, stage),
                                    on_done=lambda study, outcome, r=run: _done(r, study, outcome),
                                    should_cancel=run.cancel_requested.is_set)
                return f"{len(summary.done)} segmented, {len(summary.failed)} failed, " \
                       f"{len(summary.already_done)} kept from before"

            run.state, run.message = outcome_of(
                run_all, log, f"batch {run.batch_id}",
                cancelled="cancelled; finished studies are kept (resume to do the rest)")
            for status in run.studies.values():
                if status.state in ("queued", "running") and run.state != "done":
                    status.state, status.stage = "queued", "not run"


def _found(run: BatchRun, studies: list[FoundStudy], todo: list[FoundStudy]) -> None:
    waiting = {study.study_id for study in todo}
    folder = BatchFolder(run.output_dir)
    for study in studies:
        run.found[study.study_id] = study
        status = StudyStatus(study.study_id)
        if study.study_id not in waiting:
            status.state, status.progress, status.stage = "kept", 1.0, "finished by an earlier run"
            _fill_totals(status, folder.record(study))
        run.studies[study.study_id] = status
    run.message = f"{len(todo)} studies to segment, {len(studies) - len(todo)} kept from before"


def _progress(run: BatchRun, study_id: str, fraction: float, stage: str) -> None:
    status = run.studies[study_id]
    status.state, status.progress, status.stage = "running", fraction, stage


def _done(run: BatchRun, study: FoundStudy, outcome) -> None:
    status = run.studies[study.study_id]
    status.state, status.progress = ("done", 1.0) if outcome.ok else ("failed", 1.0)
    status.stage, status.error = status.state, outcome.error
    if outcome.ok:
        _fill_totals(status, {"totals": outcome.totals})


def _fill_totals(status: StudyStatus, record: dict | None) -> None:
    totals = (record or {}).get("totals") or {}
    status.n_lesions, status.mtv_ml = totals.get("n_lesions"), totals.get("mtv_ml")
