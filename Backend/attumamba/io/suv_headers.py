"""Read the SUV-relevant tags of PET headers, refusing what cannot be trusted.

Each reader names the DICOM tag in its error, so a user knows exactly what to fix. Split
from :mod:`.suv`, which does the arithmetic and picks the branch.
"""

from __future__ import annotations

import datetime as _dt
import math
import struct
import warnings
from typing import Sequence

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from ..errors import InputError
from .dicom_time import dataset_datetime, parse_datetime, parse_time

#: Private tags: (group, element offset within the private block, private creator).
GE_SCAN_DATETIME = (0x0009, 0x0D, "GEMS_PETD_01")
PHILIPS_SUV_FACTOR = (0x7053, 0x00, "Philips PET Private Group")
PHILIPS_ACTIVITY_FACTOR = (0x7053, 0x09, "Philips PET Private Group")

#: Dose values below this are taken as MBq, not Bq (no PET study injects less than 10 kBq).
MBQ_DOSE_LIMIT = 1.0e4
#: Weights at or above this are taken as grams, not kg.
GRAM_WEIGHT_LIMIT = 1000.0


def scan_reference_time(slices: Sequence[Dataset]) -> tuple[_dt.datetime, str]:
    """The time the dose is decayed to (DecayCorrection START) and where it came from."""
    first = slices[0]
    series = dataset_datetime(first, "Series")
    acquisitions = [t for t in (dataset_datetime(ds, "Acquisition") for ds in slices) if t]
    earliest = min(acquisitions) if acquisitions else None
    if series is not None and (earliest is None or series <= earliest):
        return series, f"scan time {series:%Y-%m-%d %H:%M:%S} from SeriesDate/SeriesTime"
    ge_time = parse_datetime(private_value(first, GE_SCAN_DATETIME))
    if ge_time is not None:
        return ge_time, (
            f"scan time {ge_time:%Y-%m-%d %H:%M:%S} from GE private (0009,100d): the series time "
            "is later than the acquisition (post-processed series)"
        )
    if earliest is not None:
        why = "the series time is later than it" if series else "no SeriesDate/SeriesTime"
        return earliest, (
            f"scan time {earliest:%Y-%m-%d %H:%M:%S} from the earliest AcquisitionDate/Time ({why})"
        )
    raise InputError(
        "PET series has neither SeriesDate/SeriesTime (0008,0021)/(0008,0031) nor "
        "AcquisitionDate/AcquisitionTime (0008,0022)/(0008,0032): the time of the scan is "
        "unknown, so the injected dose cannot be decay-corrected and SUV cannot be computed."
    )


def injection_time(pharm: Dataset, scan_time: _dt.datetime) -> tuple[_dt.datetime, str]:
    """Injection datetime from the radiopharmaceutical item, handling a midnight crossing."""
    full = parse_datetime(pharm.get("RadiopharmaceuticalStartDateTime"))
    if full is not None:
        return full, f"injection {full:%Y-%m-%d %H:%M:%S} from RadiopharmaceuticalStartDateTime"
    time_only = parse_time(pharm.get("RadiopharmaceuticalStartTime"))
    if time_only is None:
        raise InputError(
            "PET series has neither RadiopharmaceuticalStartDateTime (0018,1078) nor "
            "RadiopharmaceuticalStartTime (0018,1072): the injection time is unknown, so SUV "
            "cannot be computed. Fill in the injection time in the PET headers."
        )
    # The scan's date is the series date except for series made later (post-processed),
    # where the acquisition date is the right one.
    moment = _dt.datetime.combine(scan_time.date(), time_only)
    note = f"injection {moment:%H:%M:%S} from RadiopharmaceuticalStartTime on the scan date"
    if moment > scan_time:
        moment -= _dt.timedelta(days=1)
        note += " (moved to the day before: the scan is after midnight)"
    return moment, note


def patient_weight_kg(ds: Dataset, notes: list[str]) -> float:
    """PatientWeight in kg; values ≥ 1000 are taken as grams (with a warning)."""
    weight = positive_float(ds.get("PatientWeight"))
    if weight is None:
        raise InputError(
            "PET series has no PatientWeight (0010,1030): SUV cannot be computed. Fill in the "
            "patient's weight in kg in the PET headers, or load an already-converted SUV volume."
        )
    if weight >= GRAM_WEIGHT_LIMIT:
        message = f"PatientWeight {weight:g} looks like grams: using {weight / 1000:g} kg"
        warnings.warn(message, UserWarning, stacklevel=3)
        notes.append(message)
        weight /= 1000.0
    notes.append(f"weight {weight:g} kg")
    return weight


def injected_dose_bq(pharm: Dataset, notes: list[str]) -> float:
    """RadionuclideTotalDose in Bq; values below 10⁴ are taken as MBq (with a warning)."""
    dose = positive_float(pharm.get("RadionuclideTotalDose"))
    if dose is None:
        raise InputError(
            "PET series has no RadionuclideTotalDose (0018,1074) in its "
            "RadiopharmaceuticalInformationSequence: the injected dose is unknown, so SUV cannot "
            "be computed. Fill in the dose in Bq in the PET headers."
        )
    if dose < MBQ_DOSE_LIMIT:
        message = f"RadionuclideTotalDose {dose:g} is too small for Bq: taken as {dose:g} MBq"
        warnings.warn(message, UserWarning, stacklevel=3)
        notes.append(message)
        dose *= 1.0e6
    notes.append(f"injected dose {dose / 1e6:.2f} MBq")
    return dose


def radiopharmaceutical(ds: Dataset) -> Dataset:
    sequence = ds.get("RadiopharmaceuticalInformationSequence")
    if not sequence:
        raise InputError(
            "PET series has no RadiopharmaceuticalInformationSequence (0054,0016): the injected "
            "dose, half-life and injection time are unknown, so SUV cannot be computed."
        )
    return sequence[0]


def radionuclide_half_life_s(pharm: Dataset) -> float:
    half_life = positive_float(pharm.get("RadionuclideHalfLife"))
    if half_life is None:
        raise InputError(
            "PET series has no RadionuclideHalfLife (0018,1075): the dose cannot be "
            "decay-corrected, so SUV cannot be computed (F-18: 6586.2 s, Ga-68: about 4070 s)."
        )
    return half_life



def require_attenuation_corrected(ds: Dataset) -> None:
    corrected = corrected_image(ds)
    if "ATTN" not in corrected:
        raise InputError(
            f"PET series CorrectedImage (0028,0051) = {'/'.join(corrected) or '(missing)'} lacks "
            "ATTN: the images are not attenuation-corrected, so their SUV is meaningless. Use "
            "the attenuation-corrected (AC) PET series."
        )


def require_decay_corrected(ds: Dataset) -> None:
    corrected = corrected_image(ds)
    if "DECY" not in corrected and "DECAY" not in corrected:
        raise InputError(
            f"PET series CorrectedImage (0028,0051) = {'/'.join(corrected) or '(missing)'} lacks "
            "DECY although DecayCorrection is not NONE: the headers contradict each other, so SUV "
            "cannot be computed reliably."
        )


def corrected_image(ds: Dataset) -> list[str]:
    value = ds.get("CorrectedImage")
    if value is None:
        return []
    values = [value] if isinstance(value, str) else list(value)
    return [str(v).strip().upper() for v in values]


def series_text(slices: Sequence[Dataset], keyword: str, tag: str) -> str:
    """A value every slice must share; differing values are refused."""
    values = {str(ds.get(keyword, "") or "").strip() for ds in slices}
    if len(values) > 1:
        raise InputError(
            f"PET slices disagree on {keyword} {tag} ({', '.join(sorted(values))}): they do not "
            "form one series. Pass a folder with one PET series."
        )
    return values.pop()


def private_value(ds: Dataset, spec: tuple[int, int, str]) -> object:
    """A private tag by creator (any block), else at its usual block 0x10."""
    group, offset, creator = spec
    try:
        return ds.get_private_item(group, offset, creator).value
    except KeyError:
        element = ds.get((group, 0x1000 + offset))
        return None if element is None else element.value


def private_float(ds: Dataset, spec: tuple[int, int, str]) -> float | None:
    """A private numeric tag as a float; raw bytes (VR unknown) are read as text or a double."""
    value = private_value(ds, spec)
    if isinstance(value, bytes):
        text = value.decode("ascii", errors="replace").strip("\x00 ").split("\\")[0]
        try:
            return float(text)
        except ValueError:
            return struct.unpack("<d", value)[0] if len(value) == 8 else None
    if isinstance(value, MultiValue):
        value = value[0] if value else None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def positive_float(value: object, *, allow_zero: bool = False) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if math.isnan(number) or number < 0 or (number == 0 and not allow_zero):
        return None
    return number
