"""DICOM dates and times to and from :class:`datetime.datetime`.

SUV depends on the minutes between injection and scan, so every DA/TM/DT value is read
through pydicom's own parsers (which know the optional parts and fractions) and turned
into naive datetimes that can be subtracted. Time zones are dropped: the injection and
the scan happen on the same site clock, and mixing aware and naive values would fail.
"""

from __future__ import annotations

import datetime as _dt

from pydicom.dataset import Dataset
from pydicom.valuerep import DA, DT, TM


def _text(value: object) -> str:
    """A header value as clean text ('' when absent); private tags may come back as bytes."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    return str(value).strip().strip("\x00").strip()


def parse_date(value: object) -> _dt.date | None:
    """A DA value (YYYYMMDD; legacy YYYY.MM.DD too) or None when empty or malformed."""
    text = _text(value).replace(".", "").replace("-", "")
    if not text:
        return None
    try:
        parsed = DA(text)
    except ValueError:
        return None
    return _dt.date(parsed.year, parsed.month, parsed.day) if parsed is not None else None


def parse_time(value: object) -> _dt.time | None:
    """A TM value (HH[MM[SS[.FFFFFF]]]; legacy HH:MM:SS too) or None when empty or malformed."""
    text = _text(value).replace(":", "")
    if not text:
        return None
    try:
        parsed = TM(text)
    except ValueError:
        return None
    if parsed is None:
        return None
    return _dt.time(parsed.hour, parsed.minute, parsed.second, parsed.microsecond)


def parse_datetime(value: object) -> _dt.datetime | None:
    """A DT value (YYYYMMDDHHMMSS.FFFFFF&ZZXX, trailing parts optional) as a naive datetime."""
    text = _text(value)
    if not text:
        return None
    try:
        parsed = DT(text)
    except ValueError:
        return None
    if parsed is None:
        return None
    return _dt.datetime(
        parsed.year, parsed.month, parsed.day,
        parsed.hour, parsed.minute, parsed.second, parsed.microsecond,
    )


def combine(date_value: object, time_value: object) -> _dt.datetime | None:
    """A DA and a TM value as one datetime, or None when either is missing."""
    date = parse_date(date_value)
    time = parse_time(time_value)
    if date is None or time is None:
        return None
    return _dt.datetime.combine(date, time)


def dataset_datetime(ds: Dataset, prefix: str) -> _dt.datetime | None:
    """``<prefix>DateTime`` if the dataset has it, else ``<prefix>Date`` + ``<prefix>Time``.

    ``prefix`` is a keyword stem such as "Series", "Acquisition" or "Content".
    """
    combined = parse_datetime(ds.get(f"{prefix}DateTime"))
    if combined is not None:
        return combined
    return combine(ds.get(f"{prefix}Date"), ds.get(f"{prefix}Time"))


def format_date(moment: _dt.datetime) -> str:
    """DA text for a datetime."""
    return moment.strftime("%Y%m%d")


def format_time(moment: _dt.datetime) -> str:
    """TM text for a datetime, with microseconds so round trips are exact."""
    return moment.strftime("%H%M%S.%f")


def format_datetime(moment: _dt.datetime) -> str:
    """DT text for a datetime, with microseconds so round trips are exact."""
    return moment.strftime("%Y%m%d%H%M%S.%f")
