"""The output folder of a batch run, written so that nothing is ever half there.

    OUT/studies/<id>/     a finished study: its files, then ``study.json`` (written last)
    OUT/failed/<id>.json  why a study failed (``.log`` beside it: the traceback, if any)
    OUT/cohort_*.csv, OUT/report.html, OUT/batch.json

A study is assembled in ``OUT/studies/.<id>.partial`` and renamed into place in one step, so
an interrupted run leaves either the whole study or none of it; ``--resume`` then skips every
study whose folder exists. Cohort files are replaced atomically too.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import InputError
from ..io.study_types import Study, safe_id
from .task import StudyOutcome, outcome_record

RECORD_NAME = "study.json"
PARTIAL_PREFIX = "."
PARTIAL_SUFFIX = ".partial"


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write ``path`` through a temporary file in the same folder and one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data.encode() if isinstance(data, str) else data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


class BatchFolder:
    """Reads and writes one batch output folder."""

    def __init__(self, root: Path):
        self.root = Path(root).expanduser()
        self.studies = self.root / "studies"
        self.failed = self.root / "failed"

    def study_folder(self, study_id: str) -> Path:
        return self.studies / safe_id(study_id)

    def is_done(self, study_id: str) -> bool:
        return (self.study_folder(study_id) / RECORD_NAME).is_file()

    def finished_ids(self) -> list[str]:
        if not self.studies.is_dir():
            return []
        return sorted(p.parent.name for p in self.studies.glob(f"*/{RECORD_NAME}"))

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
        """Refuse to write over earlier results unless resuming; drop what an interrupted run left."""
        self.refuse_earlier_results(resume)
        self.studies.mkdir(parents=True, exist_ok=True)
        for partial in self.studies.glob(f"{PARTIAL_PREFIX}*{PARTIAL_SUFFIX}"):
            shutil.rmtree(partial, ignore_errors=True)

    def record(self, study_id: str) -> dict | None:
        """The record of a finished or failed study, None if it has neither."""
        for path in (self.study_folder(study_id) / RECORD_NAME, self.failed / f"{safe_id(study_id)}.json"):
            if path.is_file():
                return json.loads(path.read_text())
        return None

    def write(self, outcome: StudyOutcome, study: Study) -> Path:
        """Put a finished study in place (all files, then its record, then one rename) or record a failure."""
        record = json.dumps(outcome_record(outcome, study), indent=2, default=str)
        name = safe_id(study.study_id)
        final = self.study_folder(study.study_id)
        if outcome.ok and final.exists():  # not ours (ours appear whole, with a record): never overwrite it
            outcome.ok, outcome.files = False, {}
            outcome.error = f"{final} exists but is not a finished study of this run; move it away and resume"
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
                (partial / file_name).write_bytes(data)
            (partial / RECORD_NAME).write_text(record)
            os.replace(partial, final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        for stale in (self.failed / f"{name}.json", self.failed / f"{name}.log"):  # it failed in an earlier run
            stale.unlink(missing_ok=True)
        return final
