"""Studies -> an nnU-Net v2 raw dataset (``DatasetNNN_Name``).

Every study found by :func:`attumamba.io.find_studies` (DICOM trees, autoPET folders, the
``synth`` output, nnU-Net or ``_ct``/``_pet`` pairs) becomes ``<case>_0000`` = CT in HU
resampled onto the PET grid (linear, -1024 outside) and ``<case>_0001`` = PET in SUV, as the
autoPET winners and Att-UMamba's PSMA model do. A binary lesion mask found beside the study
(``SEG.nii.gz``, also in a ``truth/`` folder) goes to ``labelsTr`` on the PET grid (nearest
neighbour only if its grid differs); studies without one go to ``imagesTs``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

from ..errors import CancelledError, InputError
from ..io import Study, find_studies, resample_to

LABEL_NAMES = ("SEG.nii.gz", "SEG.nii", "seg.nii.gz", "label.nii.gz")
# Both channels use nnU-Net's CT normalisation (dataset-wide percentile clip + z-score), as the
# Att-UMamba PSMA plan and the autoPET winners do for CT and SUV.
CHANNEL_NAMES = {"0": "CT", "1": "CT"}


@dataclass
class DatasetReport:
    folder: Path
    training: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.folder}: {len(self.training)} training cases, {len(self.test)} without labels (imagesTs)"]
        lines += [f"  skipped {path}: {reason}" for path, reason in self.skipped]
        return "\n".join(lines)


def find_label(study: Study) -> Path | None:
    """A lesion mask beside the study's PET (or CT), or in a ``truth/`` folder of the study."""
    for anchor in (study.pet, study.ct):
        base = anchor if anchor.is_dir() else anchor.parent
        for folder in (base, base.parent, base / "truth", base.parent / "truth"):
            for name in LABEL_NAMES:
                if (folder / name).is_file():
                    return folder / name
    return None


def case_name(study: Study, used: set[str]) -> str:
    """A file-name-safe, unique case identifier."""
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in study.study_id) or "case"
    candidate, n = name, 1
    while candidate in used:
        n += 1
        candidate = f"{name}_{n}"
    used.add(candidate)
    return candidate


def _binary_label_on(label_path: Path, reference: sitk.Image) -> sitk.Image:
    label = sitk.ReadImage(str(label_path))
    same_grid = (label.GetSize() == reference.GetSize()
                 and np.allclose(label.GetOrigin(), reference.GetOrigin(), atol=1e-3)
                 and np.allclose(label.GetSpacing(), reference.GetSpacing(), atol=1e-4)
                 and np.allclose(label.GetDirection(), reference.GetDirection(), atol=1e-5))
    if not same_grid:
        label = resample_to(label, reference, kind="label")
    binary = sitk.Cast(label > 0, sitk.sitkUInt8)
    binary.CopyInformation(reference)
    return binary


def convert_studies(
    root: str | Path,
    nnunet_raw: str | Path,
    dataset_id: int,
    name: str,
    *,
    progress: Callable[[float, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> DatasetReport:
    """Write ``nnunet_raw/Dataset{id:03d}_{name}`` from the studies under ``root``."""
    if not 1 <= dataset_id <= 999:
        raise InputError(f"the dataset id must be between 1 and 999 (nnU-Net's DatasetNNN), not {dataset_id}")
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise InputError(f"the dataset name {name!r} may contain only letters, digits, '-' and '_'")
    folder = Path(nnunet_raw) / f"Dataset{dataset_id:03d}_{name}"
    existing = [p for p in Path(nnunet_raw).glob(f"Dataset{dataset_id:03d}_*") if not p.name.endswith(".partial")]
    if existing:
        raise InputError(f"{existing[0]} already uses dataset id {dataset_id}; choose another --id (nothing was overwritten).")
    scan = find_studies(root)
    if not scan.studies:
        raise InputError(f"no CT/PET study was found under {root}:\n{scan.summary()}")
    labels = [find_label(study) for study in scan.studies]
    if not any(labels):
        raise InputError(f"none of the {len(scan.studies)} studies has a lesion mask (SEG.nii.gz); nothing to train on")
    # Written into a sibling ".partial" folder and renamed at the end: a failed or cancelled
    # run leaves no half-made dataset that nnU-Net could pick up.
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        report = _write_cases(scan, labels, partial, progress, cancel)
        report.folder = folder
        _write_dataset_json(partial, len(report.training))
        partial.rename(folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if progress is not None:
        progress(1.0, f"{len(report.training)} training cases written")
    return report


def _write_cases(scan, labels, folder: Path, progress, cancel) -> DatasetReport:
    report = DatasetReport(folder, skipped=[(str(s.path), s.reason) for s in scan.skipped])
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for n, (study, label_path) in enumerate(zip(scan.studies, labels)):
        if cancel is not None and cancel():
            raise CancelledError(f"stopped after {n} of {len(scan.studies)} studies; no dataset was written")
        case = case_name(study, used)
        if progress is not None:
            progress(n / len(scan.studies), f"{case}: reading")
        try:
            pet = study.load_pet()
            ct_on_pet = sitk.Cast(resample_to(study.load_ct(), pet, kind="image", default=-1024), sitk.sitkFloat32)
        except InputError as exc:
            report.skipped.append((study.study_id, str(exc)))
            continue
        subset = "Tr" if label_path is not None else "Ts"
        sitk.WriteImage(ct_on_pet, str(folder / f"images{subset}" / f"{case}_0000.nii.gz"), useCompression=True)
        sitk.WriteImage(sitk.Cast(pet, sitk.sitkFloat32), str(folder / f"images{subset}" / f"{case}_0001.nii.gz"), useCompression=True)
        if label_path is not None:
            sitk.WriteImage(_binary_label_on(label_path, pet), str(folder / "labelsTr" / f"{case}.nii.gz"), useCompression=True)
            report.training.append(case)
        else:
            report.test.append(case)
    if not report.training:
        raise InputError("every study with a lesion mask failed to load; see the skipped studies:\n" + report.summary())
    return report


def _write_dataset_json(folder: Path, n_training: int) -> None:
    dataset_json = {
        "channel_names": CHANNEL_NAMES,
        "labels": {"background": 0, "lesion": 1},
        "numTraining": n_training,
        "file_ending": ".nii.gz",
        "overwrite_image_reader_writer": "SimpleITKIO",
        "description": "CT (HU, resampled onto the PET grid) and PET (SUVbw); written by attumamba-seg dataset",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
