"""``find_studies``: every CT + PET study under a folder, and everything passed over.

Batch runs start here. The tree is walked once; volume files are paired by name
(:mod:`.study_files`), every other file is tried as DICOM by reading its header only
(:mod:`.dicom_headers`, no pixel data), and DICOM series are paired by study and frame of
reference (:mod:`.study_dicom`). Nothing is silently ignored: each unused file, series or
folder is in ``StudyScan.skipped`` with a reason.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from ._callbacks import CancelCallback, ProgressCallback, check_cancelled, report
from .dicom_headers import DISCOVERY_TAGS, group_series
from .study_dicom import pair_dicom_series
from .study_files import is_raw_data_file, pair_volume_files
from .study_types import Skipped, Study, StudyScan, unique_ids
from .volume import volume_suffix


RAW_DATA_REASON = "raw pixel data of a .mhd/.nhdr header (read through the header)"


def find_studies(
    root: str | Path,
    *,
    progress: ProgressCallback = None,
    cancel: CancelCallback = None,
) -> StudyScan:
    """All CT + PET studies under ``root`` (DICOM trees and NIfTI/NRRD/MHA pairs)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise InputError(f"{root} does not exist: pass the folder that holds the studies.")
    if not root.is_dir():
        raise InputError(f"{root} is a file: pass the folder that holds the studies.")
    report(progress, 0.0, "listing files")
    volume_files, dicom_candidates, skipped = _walk(root, cancel)
    series, rejected = group_series(
        dicom_candidates,
        tags=DISCOVERY_TAGS,
        total=len(dicom_candidates),
        progress=lambda f, stage: report(progress, 0.05 + 0.9 * f, stage),
        cancel=cancel,
    )
    check_cancelled(cancel, "Finding studies")
    skipped += [Skipped(path, reason) for path, reason in rejected]
    dicom_studies, dicom_skipped = pair_dicom_series(series)
    file_studies, file_skipped = pair_volume_files(root, volume_files)
    studies: list[Study] = unique_ids(dicom_studies + file_studies, root)
    skipped = sorted(skipped + dicom_skipped + file_skipped, key=lambda s: str(s.path))
    report(progress, 1.0, f"{len(studies)} studies found")
    return StudyScan(studies=studies, skipped=skipped)


def _walk(root: Path, cancel: CancelCallback) -> tuple[list[Path], list[Path], list[Skipped]]:
    """Volume files, files to try as DICOM, and what is skipped by name alone."""
    volume_files: list[Path] = []
    candidates: list[Path] = []
    skipped: list[Skipped] = []
    for folder, dirs, names in os.walk(root):
        check_cancelled(cancel, "Finding studies")
        here = Path(folder)
        hidden = sorted(d for d in dirs if d.startswith("."))
        skipped += [Skipped(here / d, "hidden folder, not searched") for d in hidden]
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = here / name
            if name.startswith("."):
                skipped.append(Skipped(path, "hidden file"))
            elif volume_suffix(path) is not None:
                volume_files.append(path)
            elif is_raw_data_file(path):
                skipped.append(Skipped(path, RAW_DATA_REASON))
            else:
                candidates.append(path)
    return volume_files, candidates, skipped
