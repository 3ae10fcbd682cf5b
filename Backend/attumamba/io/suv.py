"""SUVbw from PET DICOM headers (QIBA FDG-PET/CT profile, Appendix G, extended).

Pure functions on pydicom datasets, so every branch can be checked on headers built in
a test. :func:`compute_suv_factor` takes the headers of all slices of one series and
returns one factor per slice: SUVbw = (stored × RescaleSlope + RescaleIntercept of that
slice) × factor. The factor is the same for every slice except where the header makes it
per-frame (DecayCorrection NONE, per-slice Philips factors).

What is implemented, by Units (0054,1001):

- BQML: factor = weight[g] / decayed dose[Bq].
- CNTS (Philips): factor = private SUV factor (7053,1000) if present; otherwise the private
  activity-concentration factor (7053,1009) turns rescaled counts into Bq/mL, then as BQML.
- GML: values already SUVbw, factor 1 (refused when SUVType says another SUV).

The decayed dose depends on DecayCorrection (0054,1102):

- START: dose decayed from injection to the scan reference time (below).
- ADMIN: images are decay-corrected to the injection, the dose is used undecayed.
- NONE: each frame is decayed to its own average-activity time: the series reference time
  + FrameReferenceTime (0054,1300) when given, else the frame's acquisition start + the
  mid-activity offset t* = ln(λT / (1 − e^(−λT))) / λ of its ActualFrameDuration T (0018,1242).

Scan reference time: SeriesDate/Time unless it is later than the earliest acquisition
(a post-processed series); then GE's private scan datetime (0009,100d) when present, else
the earliest AcquisitionDate/Time. Injection time: RadiopharmaceuticalStartDateTime, else
the scan's date (the SeriesDate, or the acquisition date of a post-processed series) +
RadiopharmaceuticalStartTime, moved one day back when that would fall after the scan
(injection before midnight, scan after).
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset

from ..errors import InputError
from .dicom_time import dataset_datetime
from .suv_headers import (
    PHILIPS_ACTIVITY_FACTOR,
    PHILIPS_SUV_FACTOR,
    radionuclide_half_life_s,
    injected_dose_bq,
    injection_time,
    patient_weight_kg,
    positive_float,
    private_float,
    radiopharmaceutical,
    require_attenuation_corrected,
    require_decay_corrected,
    scan_reference_time,
    series_text,
)

SUPPORTED_UNITS = ("BQML", "CNTS", "GML")
MAX_DECAY_HALF_LIVES = 10.0


@dataclass(frozen=True)
class SuvFactor:
    """How rescaled PET values were turned into SUVbw, for the user and the report."""

    factor: float
    """Factor of the first slice; equal to every slice's unless ``slice_factors`` differ."""
    units: str
    decay_correction: str
    scan_time: _dt.datetime | None
    injection_time: _dt.datetime | None
    decay_s: float | None
    weight_kg: float | None
    injected_dose_bq: float | None
    decayed_dose_bq: float | None
    slice_factors: tuple[float, ...]
    notes: tuple[str, ...]


def decayed_dose(dose_bq: float, half_life_s: float, elapsed_s: float) -> float:
    """Activity left after ``elapsed_s`` seconds: dose × 2^(−elapsed / half-life)."""
    return dose_bq * 2.0 ** (-elapsed_s / half_life_s)


def suvbw_factor(weight_kg: float, decayed_dose_bq: float) -> float:
    """Bq/mL → SUVbw (g/mL): weight in grams over the decayed dose."""
    return weight_kg * 1000.0 / decayed_dose_bq


def mid_activity_offset_s(duration_s: float, half_life_s: float) -> float:
    """Seconds after a frame's start at which the activity equals its mean over the frame.

    For activity A0·e^(−λt) over [0, T] the mean is A0(1 − e^(−λT))/(λT); solving
    e^(−λt*) = (1 − e^(−λT))/(λT) gives t* = ln(λT / (1 − e^(−λT))) / λ (→ T/2 as λT → 0).
    """
    if duration_s <= 0:
        return 0.0
    lam = math.log(2.0) / half_life_s
    x = lam * duration_s
    return math.log(x / -math.expm1(-x)) / lam


def rescaled_pixels(ds: Dataset) -> np.ndarray:
    """One slice's stored values × its own RescaleSlope + RescaleIntercept (float64)."""
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return ds.pixel_array.astype(np.float64) * slope + intercept


def compute_suv_factor(headers: Dataset | Sequence[Dataset]) -> SuvFactor:
    """SUVbw factors for a PET series (all its slices' headers, or one dataset).

    Raises :class:`InputError` naming the tag when the headers cannot give a trustworthy SUV.
    """
    slices = [headers] if isinstance(headers, Dataset) else list(headers)
    if not slices:
        raise InputError("No PET headers given: SUV cannot be computed.")
    first = slices[0]
    units = series_text(slices, "Units", "(0054,1001)").upper()
    if units not in SUPPORTED_UNITS:
        shown = units or "(missing)"
        raise InputError(
            f"PET series has Units (0054,1001) = {shown}: only BQML, CNTS (Philips) and GML can be "
            "converted to SUV. Export the PET from the scanner in Bq/mL (BQML), or load an "
            "already-converted SUV volume (NIfTI/NRRD)."
        )
    require_attenuation_corrected(first)
    notes: list[str] = [f"Units {units}"]

    if units == "GML":
        suv_type = str(first.get("SUVType", "") or "").upper()
        if suv_type not in ("", "BW"):
            raise InputError(
                f"PET series is in g/ml with SUVType (0054,1006) = {suv_type}, not body-weight SUV; "
                "this tool works in SUVbw. Export the PET in Bq/mL (BQML) instead."
            )
        notes.append("pixel values are already SUVbw (Units GML): factor 1")
        return _result(units, first, [1.0] * len(slices), notes)

    if units == "CNTS":
        philips = [private_float(ds, PHILIPS_SUV_FACTOR) for ds in slices]
        if all(value is not None and value > 0 for value in philips):
            notes.append("Philips private SUV scale factor (7053,1000) used")
            return _result(units, first, [float(v) for v in philips], notes)  # type: ignore[arg-type]
        activity = [private_float(ds, PHILIPS_ACTIVITY_FACTOR) for ds in slices]
        if not all(value is not None and value > 0 for value in activity):
            raise InputError(
                "PET series is in CNTS (Philips counts) but has neither the private SUV factor "
                "(7053,1000) nor the activity-concentration factor (7053,1009): SUV cannot be "
                "computed. Export the PET from the scanner in Bq/mL (BQML)."
            )
        notes.append("Philips activity-concentration factor (7053,1009) turns counts into Bq/mL")
        to_bqml = [float(v) for v in activity]  # type: ignore[arg-type]
    else:
        to_bqml = [1.0] * len(slices)

    return _bqml_result(slices, units, to_bqml, notes)


def _bqml_result(
    slices: list[Dataset], units: str, to_bqml: list[float], notes: list[str]
) -> SuvFactor:
    """The weight / decayed-dose path shared by BQML and Philips activity counts."""
    first = slices[0]
    decay_correction = series_text(slices, "DecayCorrection", "(0054,1102)").upper()
    if decay_correction not in ("START", "ADMIN", "NONE"):
        raise InputError(
            f"PET series has DecayCorrection (0054,1102) = {decay_correction or '(missing)'}: "
            "expected START, ADMIN or NONE. SUV cannot be computed."
        )
    if decay_correction != "NONE":
        require_decay_corrected(first)
    weight_kg = patient_weight_kg(first, notes)
    pharm = radiopharmaceutical(first)
    dose_bq = injected_dose_bq(pharm, notes)

    if decay_correction == "ADMIN":
        notes.append("images decay-corrected to the injection (ADMIN): dose used undecayed")
        factor = suvbw_factor(weight_kg, dose_bq)
        return _result(
            units, first, [factor * k for k in to_bqml], notes,
            decay="ADMIN", weight=weight_kg, dose=dose_bq, decayed=dose_bq,
        )

    half_life = radionuclide_half_life_s(pharm)
    scan_time, scan_note = scan_reference_time(slices)
    injection, injection_note = injection_time(pharm, scan_time)
    notes += [scan_note, injection_note]
    if decay_correction == "START":
        reference_times = [scan_time] * len(slices)
    else:
        reference_times = [_frame_mid_time(ds, scan_time, half_life) for ds in slices]
        notes.append("no decay correction (NONE): each frame decayed to its average-activity time")
    factors = []
    for reference, k in zip(reference_times, to_bqml):
        elapsed = _checked_decay_s(reference, injection, half_life)
        factors.append(suvbw_factor(weight_kg, decayed_dose(dose_bq, half_life, elapsed)) * k)
    decay_s = (scan_time - injection).total_seconds()
    if decay_correction == "START":
        notes.append(f"dose decayed over {decay_s:.0f} s ({decay_s / half_life:.3f} half-lives)")
    return _result(
        units, first, factors, notes, decay=decay_correction, scan=scan_time,
        injection=injection, decay_s=decay_s, weight=weight_kg, dose=dose_bq,
        decayed=decayed_dose(dose_bq, half_life, (reference_times[0] - injection).total_seconds()),
    )


def _frame_mid_time(ds: Dataset, scan_time: _dt.datetime, half_life: float) -> _dt.datetime:
    """A frame's average-activity time (DecayCorrection NONE)."""
    reference_ms = positive_float(ds.get("FrameReferenceTime"), allow_zero=True)
    if reference_ms is not None:
        return scan_time + _dt.timedelta(milliseconds=reference_ms)
    start = dataset_datetime(ds, "Acquisition") or scan_time
    duration_ms = positive_float(ds.get("ActualFrameDuration"))
    if duration_ms is None:
        raise InputError(
            "PET series is not decay-corrected (DecayCorrection NONE) and a slice has neither "
            "FrameReferenceTime (0054,1300) nor ActualFrameDuration (0018,1242): the frame's "
            "activity time is unknown, so SUV cannot be computed."
        )
    offset = mid_activity_offset_s(duration_ms / 1000.0, half_life)
    return start + _dt.timedelta(seconds=offset)


def _checked_decay_s(reference: _dt.datetime, injection: _dt.datetime, half_life: float) -> float:
    elapsed = (reference - injection).total_seconds()
    if elapsed < 0:
        raise InputError(
            f"PET injection time {injection:%Y-%m-%d %H:%M:%S} (RadiopharmaceuticalStartDateTime/"
            f"StartTime) is after the scan time {reference:%Y-%m-%d %H:%M:%S}: the decay time is "
            "negative. Check the injection and series times in the PET headers."
        )
    if elapsed > MAX_DECAY_HALF_LIVES * half_life:
        raise InputError(
            f"PET decay time from injection ({injection:%Y-%m-%d %H:%M:%S}, Radiopharmaceutical"
            f"StartDateTime/StartTime) to scan ({reference:%Y-%m-%d %H:%M:%S}) is {elapsed:.0f} s, "
            f"more than {MAX_DECAY_HALF_LIVES:g} half-lives ({half_life:g} s): the times or the "
            "RadionuclideHalfLife (0018,1075) are wrong."
        )
    return elapsed


def _result(
    units: str,
    first: Dataset,
    factors: list[float],
    notes: list[str],
    *,
    decay: str | None = None,
    scan: _dt.datetime | None = None,
    injection: _dt.datetime | None = None,
    decay_s: float | None = None,
    weight: float | None = None,
    dose: float | None = None,
    decayed: float | None = None,
) -> SuvFactor:
    return SuvFactor(
        factor=factors[0],
        units=units,
        decay_correction=decay or str(first.get("DecayCorrection", "") or ""),
        scan_time=scan,
        injection_time=injection,
        decay_s=decay_s,
        weight_kg=weight,
        injected_dose_bq=dose,
        decayed_dose_bq=decayed,
        slice_factors=tuple(factors),
        notes=tuple(notes),
    )
