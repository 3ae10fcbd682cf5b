"""Pair DICOM series into CT + PET studies.

A PET series pairs with a CT series of the same StudyInstanceUID *and* the same
FrameOfReferenceUID: only then do their coordinates describe one patient position. When a
study offers several candidates the CT that is not a localizer, is ORIGINAL\\PRIMARY and has
the most slices wins (likewise the PET with ATTN correction, ORIGINAL and most slices); every
series not used is reported with the reason.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from .dicom_headers import VOLUME_MODALITIES, DicomSeries
from .study_inputs import files_fingerprint
from .study_types import Skipped, Study, safe_id


def pair_dicom_series(series_list: list[DicomSeries]) -> tuple[list[Study], list[Skipped]]:
    """Studies from series (already grouped by SeriesInstanceUID) and the series left over."""
    studies: list[Study] = []
    skipped: list[Skipped] = []
    by_study: dict[str, list[DicomSeries]] = defaultdict(list)
    for series in series_list:
        reason = _unusable(series)
        if reason:
            skipped.append(Skipped(_location(series), f"{series.summary()}: {reason}"))
        else:
            by_study[series.study_uid or ""].append(series)
    for study_uid, members in by_study.items():
        found, left = _pair_study(study_uid, members)
        studies += found
        skipped += left
    return studies, skipped


def _unusable(series: DicomSeries) -> str:
    """Why a series can never be an input ('' when it can)."""
    if series.modality not in VOLUME_MODALITIES:
        kind = {
            "SEG": "a segmentation", "RTSTRUCT": "RT structures", "SR": "a structured report",
            "PR": "a presentation state", "KO": "a key-object selection",
        }.get(series.modality, "")
        what = f" ({kind})" if kind else ""
        return (
            f"unsupported modality {series.modality or '(none)'}{what}: only CT and PET (PT) "
            "image series are inputs"
        )
    if not series.study_uid:
        return "no StudyInstanceUID (0020,000D): cannot tell which study it belongs to"
    if len(series.folders) > 1:
        return (
            f"its files are spread over {len(series.folders)} folders: put the files of one "
            "series into one folder"
        )
    if "Rows" not in series.headers[0]:
        return "no pixel data (Rows/Columns missing): not an image series"
    if len(series.files) < 2 and int(series.headers[0].get("NumberOfFrames", 1) or 1) < 2:
        return "a single slice, not a 3D volume"
    if len(series.files) < 2:
        return "an enhanced (multi-frame) DICOM file, which is not supported"
    if series.modality == "PT":
        corrected = series.headers[0].get("CorrectedImage", [])
        values = {str(v).upper() for v in ([corrected] if isinstance(corrected, str) else corrected)}
        if corrected and "ATTN" not in values:
            return "PET not attenuation-corrected (CorrectedImage lacks ATTN): use the AC PET series"
    if not series.frame_of_reference_uid:
        return "no FrameOfReferenceUID (0020,0052): cannot verify that it lines up with another series"
    return ""


def _pair_study(study_uid: str, members: list[DicomSeries]) -> tuple[list[Study], list[Skipped]]:
    studies: list[Study] = []
    skipped: list[Skipped] = []
    frames = sorted({s.frame_of_reference_uid or "" for s in members})
    for frame in frames:
        cts = [s for s in members if s.modality == "CT" and s.frame_of_reference_uid == frame]
        pets = [s for s in members if s.modality == "PT" and s.frame_of_reference_uid == frame]
        if cts and pets:
            ct = max(cts, key=_ct_rank)
            pet = max(pets, key=_pet_rank)
            studies.append(_study(study_uid, frame, ct, pet, len(cts), len(pets)))
            skipped += [
                Skipped(_location(s), f"{s.summary()}: not used, the study's CT is {ct.summary()} "
                        f"({_ct_qualities(ct)})")
                for s in cts if s is not ct
            ]
            skipped += [
                Skipped(_location(s), f"{s.summary()}: not used, the study's PET is {pet.summary()} "
                        "(original, most slices)")
                for s in pets if s is not pet
            ]
            continue
        for lone in cts + pets:
            reason = _lone_reason(lone, members)
            skipped.append(Skipped(_location(lone), f"{lone.summary()}: {reason}"))
    return studies, skipped


def _lone_reason(series: DicomSeries, members: list[DicomSeries]) -> str:
    partner = "PT" if series.modality == "CT" else "CT"
    partner_name = "PET" if partner == "PT" else "CT"
    others = [s for s in members if s.modality == partner]
    if others:
        frames = ", ".join(sorted({s.frame_of_reference_uid or "?" for s in others}))
        return (
            f"mismatched frame of reference: its FrameOfReferenceUID is "
            f"{series.frame_of_reference_uid}, the study's {partner_name} series have {frames}, so "
            "they are not in one coordinate system"
        )
    own = "CT" if series.modality == "CT" else "PET"
    return (
        f"lone {own} series: no {partner_name} series in the same study "
        f"(StudyInstanceUID {series.study_uid})"
    )


def _study(
    study_uid: str, frame: str, ct: DicomSeries, pet: DicomSeries, n_cts: int, n_pets: int
) -> Study:
    first = ct.headers[0]
    patient = str(first.get("PatientID", "") or "")
    date = str(first.get("StudyDate", "") or "")
    study_id = safe_id("_".join(p for p in (patient, date) if p) or study_uid[-16:])
    title = str(first.get("StudyDescription", "") or "DICOM study")
    choice = ""
    if n_cts > 1 or n_pets > 1:
        choice = f"; chosen from {n_cts} CT and {n_pets} PET series ({_ct_qualities(ct)})"
    return Study(
        study_id=study_id,
        ct=next(iter(ct.folders)),
        pet=next(iter(pet.folders)),
        kind="dicom",
        study_uid=study_uid,
        frame_of_reference_uid=frame,
        description=(
            f"{title}: CT '{ct.description}' ({len(ct.files)} slices) + PET '{pet.description}' "
            f"({len(pet.files)} slices){choice}"
        ),
        ct_series_uid=ct.series_uid,
        pet_series_uid=pet.series_uid,
        fingerprint={"ct": files_fingerprint(ct.files), "pet": files_fingerprint(pet.files)},
    )


def _ct_rank(series: DicomSeries) -> tuple[bool, bool, int]:
    kinds = series.image_type
    return ("LOCALIZER" not in kinds, kinds[:2] == ["ORIGINAL", "PRIMARY"], len(series.files))


def _pet_rank(series: DicomSeries) -> tuple[bool, int]:
    return (series.image_type[:1] == ["ORIGINAL"], len(series.files))


def _ct_qualities(series: DicomSeries) -> str:
    kinds = series.image_type
    parts = ["not a localizer" if "LOCALIZER" not in kinds else "a localizer"]
    parts.append("ORIGINAL\\PRIMARY" if kinds[:2] == ["ORIGINAL", "PRIMARY"] else "derived")
    parts.append(f"{len(series.files)} slices")
    return ", ".join(parts)


def _location(series: DicomSeries) -> Path:
    """The folder of a series (or its first file when it is spread over several)."""
    folders = series.folders
    return next(iter(folders)) if len(folders) == 1 else series.files[0]
