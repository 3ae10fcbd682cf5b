"""The output folder of a batch run, written so that nothing is ever half there or mixed up.

    OUT/studies/<id>/     a finished study: its files, then ``study.json`` (written last)
    OUT/failed/<id>.json  why a study failed (``.log`` beside it: the traceback, if any)
    OUT/cohort_*.csv, OUT/report.html, OUT/batch.json
    OUT/.attumamba-batch.lock   held by the run using the folder

A study is assembled in ``OUT/studies/.<id>.partial``, every file and the folder flushed to the
disk, then renamed into place, so a crash or power loss leaves the whole study or none of it;
cohort files and records are replaced the same way (:mod:`attumamba.durable_files`).
Permissions follow one rule, the umask, for every output (the reason is in that module).

``study.json`` records the inputs the results were made from (paths, DICOM UIDs, a content
fingerprint) and the size of each file. ``--resume`` keeps a study only when that record
reads, matches the study it now stands for, and its files are all there; anything else is
redone and the old folder replaced once the new one is complete, with the reason in
``batch.json``. One run at a time: a second run on the same folder is refused at once.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..durable_files import (REPLACED_SUFFIX, TEMPORARY_SUFFIX, fsync_folder, replace_folder, write_atomic,
                             write_durably)
from ..errors import InputError
from ..io.study_inputs import inputs_change
from ..io.study_types import Study, safe_id
from .task import StudyOutcome, outcome_record

__all__ = ["BatchFolder", "write_atomic"]

RECORD_NAME = "study.json"
LOCK_NAME = ".attumamba-batch.lock"
PARTIAL_PREFIX = "."
PARTIAL_SUFFIX = ".partial"


class BatchFolder:
    """Reads and writes one batch output folder."""

    def __init__(self, root: Path):
        self.root = Path(root).expanduser()
        self.studies = self.root / "studies"
        self.failed = self.root / "failed"

    def study_folder(self, study_id: str) -> Path:
        return self.studies / safe_id(study_id)

    def finished_ids(self) -> list[str]:
        if not self.studies.is_dir():
            return []
        return sorted(p.parent.name for p in self.studies.glob(f"*/{RECORD_NAME}") if not p.parent.name.startswith("."))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's lock for a run; InputError at once when another run holds it."""
        from filelock import FileLock, Timeout

        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"{self.root} is a file; give a folder for the batch outputs")
        created = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.root / LOCK_NAME, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise InputError(f"{self.root} is being written by another batch run (it holds {LOCK_NAME} there); "
                             "wait until that run ends, or choose another output folder") from None
        try:
            yield
        finally:
            lock.release()
            if created and {p.name for p in self.root.iterdir()} <= {LOCK_NAME}:  # a run that wrote nothing
                (self.root / LOCK_NAME).unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    self.root.rmdir()

    def refuse_earlier_results(self, resume: bool,
                               resume_hint: str = "pass --resume to finish that run (its finished studies are kept)"):
        """InputError unless this folder can take a new run (``resume``: one that keeps what is there)."""
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"{self.root} is a file; give a folder for the batch outputs")
        done = self.finished_ids()
        if done and not resume:
            raise InputError(f"{self.root} already holds the results of {len(done)} studies; {resume_hint} "
                             "or choose an empty folder")

    def prepare(self, resume: bool) -> None:
        """Refuse to write over earlier results unless resuming; drop what an interrupted run left.

        Only under :meth:`locked`: the leftovers are then no running batch's work in progress.
        """
        self.refuse_earlier_results(resume)
        self.studies.mkdir(parents=True, exist_ok=True)
        for pattern in (f"{PARTIAL_PREFIX}*{PARTIAL_SUFFIX}", f"{PARTIAL_PREFIX}*{REPLACED_SUFFIX}"):
            for leftover in self.studies.glob(pattern):
                shutil.rmtree(leftover, ignore_errors=True)
        for folder in (self.root, self.failed):  # temporary files of an interrupted write_atomic
            for leftover in folder.glob(f".*{TEMPORARY_SUFFIX}"):
                leftover.unlink(missing_ok=True)

    def check(self, study: Study) -> tuple[dict | None, str]:
        """``study``'s finished record when its results can be kept, else None and why not ('' if none)."""
        folder = self.study_folder(study.study_id)
        if not (folder / RECORD_NAME).exists():
            return None, ""
        record = _read_record(folder / RECORD_NAME)
        if record is None or not record.get("ok"):
            return None, f"its {RECORD_NAME} could not be read (left by a crash or a power loss)"
        reason = inputs_change(record.get("inputs") or {}, study.inputs())
        if reason:
            return None, reason
        outputs = record.get("outputs")
        if not isinstance(outputs, dict):
            return None, f"its {RECORD_NAME} does not list its files (results of an earlier version)"
        for name, size in outputs.items():
            path = folder / name
            if not path.is_file() or path.stat().st_size != size:
                return None, f"its file {name} is missing or incomplete"
        return record, ""

    def record(self, study: Study) -> dict | None:
        """The record of ``study``'s own finished results or failure; None if there is neither."""
        finished, _ = self.check(study)
        if finished is not None:
            return finished
        failure = _read_record(self.failed / f"{safe_id(study.study_id)}.json")
        if failure is not None and not inputs_change(failure.get("inputs") or {}, study.inputs()):
            return failure
        return None

    def write(self, outcome: StudyOutcome, study: Study) -> Path:
        """Put a finished study in place (files, its record, flush, one rename) or record a failure.

        A folder already at the study's place is replaced only when it is a batch result (it has a
        ``study.json``: the run found it stale); anything else there is never touched.
        """
        name = safe_id(study.study_id)
        final = self.study_folder(study.study_id)
        if outcome.ok and final.exists() and not (final / RECORD_NAME).exists():
            outcome.ok, outcome.files = False, {}
            outcome.error = f"{final} exists but is not a batch result; move it away and resume"
        record = json.dumps(outcome_record(outcome, study), indent=2, default=str)
        if not outcome.ok:
            if outcome.detail:
                write_atomic(self.failed / f"{name}.log", outcome.detail)
            return write_atomic(self.failed / f"{name}.json", record)
        partial = self.studies / f"{PARTIAL_PREFIX}{name}{PARTIAL_SUFFIX}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            for file_name, data in outcome.files.items():
                write_durably(partial / file_name, data)
            write_durably(partial / RECORD_NAME, record)
            fsync_folder(partial)
            replace_folder(partial, final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        for stale in (self.failed / f"{name}.json", self.failed / f"{name}.log"):  # it failed in an earlier run
            stale.unlink(missing_ok=True)
        return final


def _read_record(path: Path) -> dict | None:
    """A JSON record, or None when it is missing, unreadable or not a JSON object."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
