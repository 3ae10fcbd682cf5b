"""The patient's sex, height and weight carried with a PET volume (for SUL, issue 18).

A PET read from DICOM keeps PatientSex, PatientSize and PatientWeight as metadata of the image,
so lean-body-mass normalisation needs no second look at the files. Volume files (NIfTI, NRRD)
carry none; their callers may give the values (CLI options, the HTTP upload's meta).
"""

from __future__ import annotations

import SimpleITK as sitk

KEY_PATIENT_SEX = "attumamba.patient_sex"
KEY_PATIENT_HEIGHT_M = "attumamba.patient_height_m"
KEY_PATIENT_WEIGHT_KG = "attumamba.patient_weight_kg"
_KEYS = (KEY_PATIENT_SEX, KEY_PATIENT_HEIGHT_M, KEY_PATIENT_WEIGHT_KG)
KEY_TRACER = "attumamba.tracer"   # the radiopharmaceutical, e.g. "Fluorodeoxyglucose" (Deauville is for FDG)


def from_headers(ds) -> tuple[str | None, float | None, float | None]:
    """(sex M/F, height in m, weight in kg) from a DICOM header; None where absent or unusable.

    PatientSize is in metres by the standard; a value over 3 is taken as centimetres, and a
    weight of 1000 or more as grams, as some systems write them.
    """
    sex = str(ds.get("PatientSex", "") or "").strip().upper()[:1] or None
    height, weight = _number(ds.get("PatientSize")), _number(ds.get("PatientWeight"))
    if height is not None and height > 3.0:
        height /= 100.0
    if weight is not None and weight >= 1000.0:
        weight /= 1000.0
    return (sex if sex in ("M", "F") else None), height, weight


def set_patient(image: sitk.Image, sex: str | None, height_m: float | None, weight_kg: float | None) -> None:
    for key, value in zip(_KEYS, (sex, height_m, weight_kg)):
        if value is not None:
            image.SetMetaData(key, str(value))


def tracer_from_headers(ds) -> str | None:
    """The radiopharmaceutical's name (or its code's meaning) from a PET header; None when absent."""
    sequence = ds.get("RadiopharmaceuticalInformationSequence") or []
    if not sequence:
        return None
    item = sequence[0]
    name = str(item.get("Radiopharmaceutical", "") or "").strip()
    if not name and item.get("RadiopharmaceuticalCodeSequence"):
        name = str(item.RadiopharmaceuticalCodeSequence[0].get("CodeMeaning", "") or "").strip()
    return name or None


def set_tracer(image: sitk.Image, tracer: str | None) -> None:
    if tracer:
        image.SetMetaData(KEY_TRACER, tracer)


def tracer_of(image: sitk.Image | None) -> str | None:
    return image.GetMetaData(KEY_TRACER) if image is not None and image.HasMetaDataKey(KEY_TRACER) else None


def patient_of(image: sitk.Image | None) -> tuple[str | None, float | None, float | None]:
    """What :func:`set_patient` stored (None for each value a volume does not carry)."""
    if image is None:
        return None, None, None
    values = [image.GetMetaData(key) if image.HasMetaDataKey(key) else None for key in _KEYS]
    return values[0], _number(values[1]), _number(values[2])


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None
