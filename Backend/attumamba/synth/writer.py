"""Write synthetic studies to disk: autoPET-style NIfTI folders or one DICOM study per case."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import SimpleITK as sitk

from ..errors import CancelledError, InputError
from ..io.dicom_write import write_ct_series, write_pet_series
from .follow_up import FollowUpPair, generate_pair
from .study import SyntheticStudy, generate_study

FORMATS = ("nifti", "dicom")


def _write_nifti(image: sitk.Image, path: Path) -> None:
    sitk.WriteImage(image, str(path), useCompression=True)


def _write_truth(study: SyntheticStudy, folder: Path) -> None:
    """Ground truth: binary SEG (autoPET), instance masks on both grids, and the JSON."""
    folder.mkdir(parents=True, exist_ok=True)
    _write_nifti(sitk.Cast(study.lesions_pet > 0, sitk.sitkUInt8), folder / "SEG.nii.gz")
    _write_nifti(study.lesions_pet, folder / "SEG_instances.nii.gz")
    _write_nifti(study.lesions_ct, folder / "SEG_instances_ct.nii.gz")
    (folder / "ground_truth.json").write_text(json.dumps(study.truth, indent=1))


def write_study(study: SyntheticStudy, out_dir: str | Path, fmt: str = "nifti", name: str | None = None) -> Path:
    """Write ``study`` into ``out_dir/<name or case_id>``; refuses a non-empty existing case folder."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    folder = Path(out_dir) / (name or study.case_id)
    if folder.exists() and any(folder.iterdir()):
        raise InputError(f"{folder} already exists and is not empty; choose another --out (nothing was overwritten).")
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "nifti":
        _write_nifti(study.ct, folder / "CT.nii.gz")
        _write_nifti(sitk.Cast(study.ct_on_pet, sitk.sitkInt16), folder / "CTres.nii.gz")
        _write_nifti(study.suv, folder / "SUV.nii.gz")
        _write_truth(study, folder)
    else:
        write_ct_series(study.ct, folder / "CT", study.dicom_study)
        write_pet_series(study.suv, folder / "PET", study.dicom_study, study.dose)
        _write_truth(study, folder / "truth")
    return folder


def write_pair(pair: FollowUpPair, out_dir: str | Path, fmt: str = "nifti") -> Path:
    """``out_dir/<case>/baseline``, ``.../follow_up`` (each a study as :func:`write_study` writes it) and
    ``.../response_truth.json``."""
    folder = Path(out_dir) / pair.baseline.case_id
    write_study(pair.baseline, folder, fmt, name="baseline")
    write_study(pair.follow_up, folder, fmt, name="follow_up")
    (folder / "response_truth.json").write_text(json.dumps(pair.truth, indent=1))
    return folder


def synthesize(
    out: str | Path,
    cases: int,
    *,
    fmt: str = "nifti",
    tracer: str = "mixed",
    seed: int = 0,
    profile: str = "full",
    first_index: int = 0,
    progress: Callable[[float, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    follow_up: bool = False,
) -> list[Path]:
    """Generate and write ``cases`` studies (indices ``first_index``..), or with ``follow_up`` as many
    baseline/follow-up pairs; returns their folders."""
    if cases < 1:
        raise InputError(f"--cases must be at least 1, not {cases}")
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    out = Path(out)
    for index in range(first_index, first_index + cases):  # check before spending minutes
        folder = out / f"synth_{index:04d}"
        if folder.exists() and any(folder.iterdir()):
            raise InputError(f"{folder} already exists and is not empty; choose another --out (nothing was overwritten).")
    folders = []
    for n, index in enumerate(range(first_index, first_index + cases)):
        if cancel is not None and cancel():
            raise CancelledError(f"stopped after {n} of {cases} studies; the finished ones are in {out}")

        def stage(fraction: float, text: str, n=n, index=index) -> None:
            if progress is not None:
                progress((n + 0.9 * fraction) / cases, f"synth_{index:04d}: {text}")

        if follow_up:
            pair = generate_pair(seed, index, tracer=tracer, profile=profile, progress=stage)
            stage(1.0, "writing")
            folders.append(write_pair(pair, out, fmt))
            continue
        study = generate_study(seed, index, tracer=tracer, profile=profile, progress=stage)
        stage(1.0, "writing")
        folders.append(write_study(study, out, fmt))
    if progress is not None:
        progress(1.0, f"{cases} studies written to {out}")
    return folders
