"""What study discovery returns: the CT/PET pairs found, and every file it passed over."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Literal

import SimpleITK as sitk

StudyKind = Literal["dicom", "nifti"]


@dataclass(frozen=True)
class Study:
    """One CT + PET pair to segment.

    ``ct`` and ``pet`` are a DICOM series folder (``kind="dicom"``; the series UIDs say which
    series when the folder holds several) or a volume file (``kind="nifti"``: NIfTI, NRRD
    or MetaImage). ``description`` says what was found and why this pair was chosen.
    """

    study_id: str
    ct: Path
    pet: Path
    kind: StudyKind
    study_uid: str | None
    frame_of_reference_uid: str | None
    description: str
    ct_series_uid: str | None = None
    pet_series_uid: str | None = None

    def load_ct(self, **kwargs: object) -> sitk.Image:
        """The CT volume in HU (keyword arguments go to :func:`load_volume`)."""
        from .volume import load_volume

        return load_volume(self.ct, series_uid=self.ct_series_uid, **kwargs)  # type: ignore[arg-type]

    def load_pet(self, **kwargs: object) -> sitk.Image:
        """The PET volume in SUVbw (keyword arguments go to :func:`load_volume`)."""
        from .volume import load_volume

        return load_volume(self.pet, series_uid=self.pet_series_uid, **kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Skipped:
    """A file, series or folder that discovery did not use, and why."""

    path: Path
    reason: str


@dataclass
class StudyScan:
    """Studies found under a root (iterable, with ``len``) and everything skipped."""

    studies: list[Study] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def __iter__(self) -> Iterator[Study]:
        return iter(self.studies)

    def __len__(self) -> int:
        return len(self.studies)

    def summary(self) -> str:
        """A few lines for the console: what was found, what was skipped and why."""
        lines = [f"{len(self.studies)} studies found, {len(self.skipped)} items skipped"]
        lines += [f"  study {s.study_id}: {s.description}" for s in self.studies]
        lines += [f"  skipped {item.path}: {item.reason}" for item in self.skipped]
        return "\n".join(lines)


def safe_id(text: str) -> str:
    """A study id usable as a folder name: letters, digits, '.', '_' and '-' only."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return cleaned or "study"


def unique_ids(studies: list[Study]) -> list[Study]:
    """Sorted by id, with ``_2``, ``_3``... appended where ids repeat."""
    seen: dict[str, int] = {}
    result = []
    for study in sorted(studies, key=lambda s: (s.study_id, str(s.ct))):
        count = seen.get(study.study_id, 0) + 1
        seen[study.study_id] = count
        if count > 1:
            study = replace(study, study_id=f"{study.study_id}_{count}")
        result.append(study)
    return result
