"""Batch runs: every study under a folder, per-study files, cohort tables and report, scale-out."""

from .runner import BatchSummary, run_batch
from .task import BatchSettings, StudyOutcome, segment_study

__all__ = ["BatchSettings", "BatchSummary", "StudyOutcome", "run_batch", "segment_study"]
