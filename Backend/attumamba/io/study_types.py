"""What study discovery returns: the CT/PET pairs found, and every file it passed over."""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Literal

import SimpleITK as sitk

from ..errors import InputError

StudyKind = Literal["dicom", "nifti"]


@dataclass(frozen=True)
class Study:
    """One CT + PET pair to segment.

    ``ct`` and ``pet`` are a DICOM series folder (``kind="dicom"``; the series UIDs say which
    series when the folder holds several) or a volume file (``kind="nifti"``: NIfTI, NRRD
    or MetaImage). ``description`` says what was found and why this pair was chosen.
    ``fingerprint`` is the inputs' content fingerprint taken at discovery (``ct`` and ``pet``,
    see :mod:`.study_inputs`), what finished results are checked against before being kept.
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
    fingerprint: dict = field(default_factory=dict, compare=False, repr=False)

    def inputs(self) -> dict:
        """The record of what this study's results are made from (paths, UIDs, fingerprint)."""
        from .study_inputs import absolute

        return {"kind": self.kind, "ct": absolute(self.ct), "pet": absolute(self.pet), "study_uid": self.study_uid,
                "ct_series_uid": self.ct_series_uid, "pet_series_uid": self.pet_series_uid,
                "description": self.description, "fingerprint": self.fingerprint}

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


#: suffix lengths tried in turn while ids still clash (0: the readable id alone)
ID_HASH_LENGTHS = (0, 8, 16, 64)


def unique_ids(studies: list[Study], root: Path | None = None) -> list[Study]:
    """Sorted by id; ids that clash get a suffix hashed from each study's own inputs.

    A readable id (``case1``) is kept when no other study has it. When several do, each gets
    ``_<hash>`` of what identifies it (its DICOM UIDs, or its files' paths relative to ``root``),
    so its id never depends on which other studies exist or how they sort: adding a study
    never renames another one's results. Ids are compared case-insensitively (folders on
    Windows and macOS are), and the suffix grows until every id is unique.
    """
    levels = [0] * len(studies)
    while True:
        ids = [_id_at(study, ID_HASH_LENGTHS[level], root) for study, level in zip(studies, levels)]
        groups: dict[str, list[int]] = defaultdict(list)
        for index, study_id in enumerate(ids):
            groups[study_id.lower()].append(index)
        clashing = [index for members in groups.values() if len(members) > 1 for index in members]
        if not clashing:
            break
        if any(levels[index] + 1 >= len(ID_HASH_LENGTHS) for index in clashing):
            raise InputError(f"studies {sorted({ids[i] for i in clashing})} have identical inputs (the same DICOM "
                             "series UIDs) and cannot be told apart: remove the copies from the study folder")
        for index in clashing:
            levels[index] += 1
    found = [replace(study, study_id=study_id) for study, study_id in zip(studies, ids)]
    return sorted(found, key=lambda s: s.study_id)


def input_identity(study: Study, root: Path | None = None) -> str:
    """What makes a study this one: its DICOM UIDs, or its CT and PET paths under ``root``."""
    if study.kind == "dicom":
        return "|".join(str(uid) for uid in (study.study_uid, study.frame_of_reference_uid,
                                             study.ct_series_uid, study.pet_series_uid))
    return "|".join(_relative(path, root) for path in (study.ct, study.pet))


def _relative(path: Path, root: Path | None) -> str:
    try:
        return Path(path).relative_to(root).as_posix() if root is not None else Path(path).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _id_at(study: Study, hash_length: int, root: Path | None) -> str:
    if not hash_length:
        return study.study_id
    digest = hashlib.sha256(input_identity(study, root).encode()).hexdigest()
    return f"{study.study_id}_{digest[:hash_length]}"
