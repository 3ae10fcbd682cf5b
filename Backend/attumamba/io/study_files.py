"""Pair CT and PET volume files (NIfTI, NRRD, MetaImage) by their names.

Three layouts are recognised, each within one folder:

- autoPET: ``CT.nii.gz`` (or ``CTres.nii.gz``, the CT resampled to the PET grid) with
  ``SUV.nii.gz``. The original CT is preferred over CTres. ``PET.nii.gz`` holds Bq/mL and a
  NIfTI has no dose or weight to convert it, so it is never used as the PET: a folder
  without ``SUV.nii.gz`` is skipped with that reason.
- nnU-Net: ``<case>_0000.nii.gz`` (CT) with ``<case>_0001.nii.gz`` (PET).
- ``<case>_ct.*`` with ``<case>_pet.*`` (or ``<case>_suv.*``).

Ground-truth masks (``SEG*``, ``*_seg*``, ``*label*``, ``*mask*``, ``*lesion*``, anything in a
``labelsTr``/``labelsTs``/``labels`` folder) are not inputs and are skipped as such.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from .study_inputs import files_fingerprint
from .study_types import Skipped, Study, safe_id
from .volume import volume_suffix
from .volume_headers import detached_data_problem

LABEL_FOLDERS = {"labelstr", "labelsts", "labels", "masks", "segmentations", "gt"}
LABEL_STEM = re.compile(r"^seg|[_-]seg|label|mask|lesion", re.IGNORECASE)
NNUNET_STEM = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
SUFFIX_STEM = re.compile(r"^(?P<case>.+)[_-](?P<role>ct|pet|suv)$", re.IGNORECASE)
AUTOPET_STEMS = {"ct", "ctres", "suv", "pet"}

SEGMENTATION_REASON = "segmentation/label file: ground truth is not an input"
RAW_DATA_SUFFIXES = (".raw", ".zraw", ".raw.gz", ".img", ".img.gz")


def stem_of(path: Path) -> str:
    """The file name without its volume ending (``CT.nii.gz`` → ``CT``)."""
    suffix = volume_suffix(path) or ""
    return path.name[: len(path.name) - len(suffix)]


def is_label_file(path: Path) -> bool:
    """True for ground-truth masks, recognised by name or by folder."""
    return path.parent.name.lower() in LABEL_FOLDERS or bool(LABEL_STEM.search(stem_of(path)))


def is_raw_data_file(path: Path) -> bool:
    """Pixel files of .mhd/.nhdr headers: read through their header, never on their own."""
    return path.name.lower().endswith(RAW_DATA_SUFFIXES)


def pair_volume_files(
    root: Path, files: list[Path]
) -> tuple[list[Study], list[Skipped]]:
    """Studies from volume files (any folders under ``root``) and the files left over."""
    by_folder: dict[Path, list[Path]] = defaultdict(list)
    skipped: list[Skipped] = []
    for path in files:
        if is_label_file(path):
            skipped.append(Skipped(path, SEGMENTATION_REASON))
        elif (unsafe := detached_data_problem(path)) is not None:  # e.g. an .mhd naming /etc/passwd
            skipped.append(Skipped(path, unsafe))
        else:
            by_folder[path.parent].append(path)
    studies: list[Study] = []
    for folder, members in sorted(by_folder.items()):
        for pair_folder in (_autopet, _nnunet, _named):
            found, used, left = pair_folder(root, folder, members)
            studies += found
            skipped += left
            members = [path for path in members if path not in used]
        skipped += [
            Skipped(
                path,
                "volume file that matches no CT/PET naming pattern (autoPET CT/SUV, nnU-Net "
                "<case>_0000/_0001, <case>_ct/_pet)",
            )
            for path in members
        ]
    return studies, skipped


Pairing = tuple[list[Study], set[Path], list[Skipped]]


def _autopet(root: Path, folder: Path, members: list[Path]) -> Pairing:
    named = {stem_of(p).lower(): p for p in members if stem_of(p).lower() in AUTOPET_STEMS}
    if not named:
        return [], set(), []
    used = set(named.values())
    ct = named.get("ct") or named.get("ctres")
    pet = named.get("suv")
    skipped = []
    if "ct" in named and "ctres" in named:
        skipped.append(Skipped(named["ctres"], "CTres is the CT resampled to the PET grid; the "
                                              "original CT of the same folder is used"))
    if pet is not None and "pet" in named:
        skipped.append(Skipped(named["pet"], "PET in Bq/mL; SUV of the same folder is used"))
    if ct is None or pet is None:
        if pet is None and "pet" in named:
            reason = (
                "autoPET folder without SUV.nii.gz: PET.nii.gz holds Bq/mL and a NIfTI carries no "
                "dose or weight to convert it to SUV. Create SUV.nii.gz (as autoPET's tcia2nifti "
                "does) or use the DICOM series"
            )
        elif ct is None:
            reason = "PET without a CT (CT.nii.gz or CTres.nii.gz) in the same folder"
        else:
            reason = "CT without a PET (SUV.nii.gz) in the same folder"
        skipped += [Skipped(p, reason) for p in named.values() if all(s.path != p for s in skipped)]
        return [], used, skipped
    name = folder.relative_to(root).as_posix() if folder != root else folder.name
    study = _file_study(name, ct, pet, f"autoPET folder: {ct.name} + {pet.name}")
    return [study], used, skipped


def _nnunet(root: Path, folder: Path, members: list[Path]) -> Pairing:
    cases: dict[str, dict[str, Path]] = defaultdict(dict)
    for path in members:
        match = NNUNET_STEM.match(stem_of(path))
        if match:
            cases[match["case"]][match["channel"]] = path
    return _pair_cases(cases, "0000", ("0001",), "nnU-Net pair")


def _named(root: Path, folder: Path, members: list[Path]) -> Pairing:
    cases: dict[str, dict[str, Path]] = defaultdict(dict)
    for path in members:
        match = SUFFIX_STEM.match(stem_of(path))
        if match:
            cases[match["case"]][match["role"].lower()] = path
    return _pair_cases(cases, "ct", ("suv", "pet"), "CT/PET pair")


def _pair_cases(
    cases: dict[str, dict[str, Path]],
    ct_key: str,
    pet_keys: tuple[str, ...],
    what: str,
) -> Pairing:
    """One study per case with a CT and a PET; ``pet_keys`` in order of preference."""
    studies: list[Study] = []
    used: set[Path] = set()
    skipped: list[Skipped] = []
    for case, channels in sorted(cases.items()):
        used.update(channels.values())
        ct = channels.get(ct_key)
        pet_key = next((key for key in pet_keys if key in channels), None)
        pet = channels.get(pet_key) if pet_key else None
        for key, path in sorted(channels.items()):
            if path not in (ct, pet):
                skipped.append(Skipped(path, f"extra file '{key}' of {what} '{case}': only "
                                             f"{ct_key} (CT) and {pet_key or pet_keys[0]} (PET) "
                                             "are used"))
        if ct is not None and pet is not None:
            studies.append(_file_study(case, ct, pet, f"{what}: {ct.name} + {pet.name}"))
        elif ct is not None or pet is not None:
            present, missing = (ct, pet_keys[0]) if ct is not None else (pet, ct_key)
            skipped.append(Skipped(present, f"{what} '{case}' without its partner file ({missing})"))
    return studies, used, skipped


def _file_study(name: str, ct: Path, pet: Path, description: str) -> Study:
    return Study(
        study_id=safe_id(name),
        ct=ct,
        pet=pet,
        kind="nifti",
        study_uid=None,
        frame_of_reference_uid=None,
        description=f"{description} (PET taken as SUV)",
        fingerprint={"ct": files_fingerprint([ct]), "pet": files_fingerprint([pet])},
    )
