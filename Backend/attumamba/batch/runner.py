"""``run_batch``: every study under a folder → per-study files and cohort outputs.

lock the output folder → find the studies → keep those finished earlier whose recorded inputs
match (``resume``; any other is redone, with the reason) → segment the rest here, in local
worker processes or on Ray → write each one atomically as it ends → rebuild the cohort tables
and the HTML report → ``batch.json`` with what happened. A study that fails is recorded with
its reason and the run goes on.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .. import __version__
from ..errors import InputError
from ..io import find_studies
from ..io.study_types import Study
from . import executors
from .cohort import write_cohort
from .outputs import BatchFolder, write_atomic
from .responses import assess_pairs, read_pairs
from .task import BatchSettings, StudyOutcome

#: (study_id, fraction of that study, stage) while a study runs
StudyProgress = Callable[[str, float, str], None]
#: (study, outcome) when a study ends
StudyDone = Callable[[Study, StudyOutcome], None]


@dataclass
class BatchSummary:
    out: Path
    found: int
    done: list[str] = field(default_factory=list)        # segmented by this run
    failed: dict[str, str] = field(default_factory=dict)  # study id → reason
    already_done: list[str] = field(default_factory=list)  # kept by --resume
    redone: dict[str, str] = field(default_factory=dict)  # study id → why its earlier results were not kept
    skipped_inputs: int = 0
    files: dict[str, Path] = field(default_factory=dict)
    responses: list[dict] = field(default_factory=list)  # a row per compared pair (--pairs)

    @property
    def ok(self) -> bool:
        return not self.failed


def run_batch(root: str | Path, out: str | Path, settings: BatchSettings | None = None, *, resume: bool = False,
              workers: int = 1, ray_address: str | None = None, on_found: Callable[[list[Study], list[Study]], None] | None = None,
              on_progress: StudyProgress | None = None, on_done: StudyDone | None = None,
              should_cancel: Callable[[], bool] | None = None, pairs_csv: str | Path | None = None) -> BatchSummary:
    """Segment every study under ``root`` into ``out``; see the module docstring. ``pairs_csv`` names
    (patient, baseline, follow-up) studies to compare once they are segmented (:mod:`.responses`)."""
    settings = settings or BatchSettings()
    if workers < 1:
        raise InputError(f"--workers must be at least 1, not {workers}")
    if workers > 1 and ray_address:
        raise InputError("give either --workers (local processes) or --ray (a Ray cluster), not both")
    if workers > 1 and settings.threads is None:
        settings = replace(settings, threads=max(1, (os.cpu_count() or 1) // workers))
    cancel = should_cancel or (lambda: False)
    folder = BatchFolder(Path(out))
    folder.refuse_earlier_results(resume)
    with folder.locked():  # held to the end: a second run on this folder is refused at once
        return _run_locked(folder, root, settings, resume, workers, ray_address, on_found, on_progress, on_done,
                           cancel, pairs_csv)


def _run_locked(folder: BatchFolder, root, settings: BatchSettings, resume: bool, workers: int,
                ray_address: str | None, on_found, on_progress, on_done, cancel, pairs_csv=None) -> BatchSummary:
    scan = find_studies(root, cancel=cancel)
    if not scan.studies:
        reasons = "; ".join(f"{s.path.name}: {s.reason}" for s in scan.skipped[:5])
        raise InputError(f"no CT + PET study found under {root}" + (f" (skipped {reasons})" if reasons else ""))
    pairs = read_pairs(pairs_csv, {s.study_id for s in scan.studies}) if pairs_csv else []   # before any work
    folder.prepare(resume)
    summary = BatchSummary(folder.root, len(scan.studies), skipped_inputs=len(scan.skipped))
    todo = []
    for study in scan.studies:
        kept, reason = folder.check(study)
        if kept is not None:
            summary.already_done.append(study.study_id)
            continue
        todo.append(study)
        if reason:
            summary.redone[study.study_id] = reason
    if on_found:  # every study found, and those this run will segment
        on_found(scan.studies, todo)
    started = datetime.datetime.now(datetime.UTC)

    def finished(study: Study, outcome: StudyOutcome) -> None:
        folder.write(outcome, study)
        if outcome.ok:
            summary.done.append(study.study_id)
        else:
            summary.failed[study.study_id] = outcome.error
        if on_done:
            on_done(study, outcome)

    progress = on_progress or (lambda study_id, fraction, stage: None)
    try:
        if ray_address:
            executors.run_on_ray(todo, settings, ray_address, progress, finished, cancel)
        elif workers > 1:
            executors.run_in_workers(todo, settings, workers, progress, finished, cancel)
        else:
            executors.run_here(todo, settings, progress, finished, cancel)
        if pairs:
            summary.responses = assess_pairs(folder, pairs, {s.study_id: s for s in scan.studies}, cancel)
    finally:  # also after a cancel: the cohort files describe what is there
        summary.files = write_cohort(folder, scan.studies, scan.skipped, f"AttUMambaSeg batch: {Path(root).name}",
                                     responses=summary.responses)
        _write_run_record(folder, root, settings, summary, started, workers, ray_address)
    return summary


def _write_run_record(folder: BatchFolder, root, settings: BatchSettings, summary: BatchSummary,
                      started: datetime.datetime, workers: int, ray_address: str | None) -> None:
    record = {
        "attumamba_version": __version__, "input": str(Path(root).resolve()), "settings": asdict(settings),
        "workers": workers, "ray": ray_address, "started": started.isoformat(),
        "ended": datetime.datetime.now(datetime.UTC).isoformat(), "studies_found": summary.found,
        "segmented_now": summary.done, "failed_now": summary.failed, "finished_before": summary.already_done,
        "redone": summary.redone,
        "inputs_skipped": summary.skipped_inputs,
    }
    write_atomic(folder.root / "batch.json", json.dumps(record, indent=2, default=str))
