"""Read DICOM headers (never pixels) and group files into series.

Both the series reader and the study discovery start here: a folder or a tree of files is
turned into series by SeriesInstanceUID, and every file that cannot take part (not DICOM,
cut short, no series UID) comes back with a reason the user can read. Pixel data is never
decoded: a truncated file is recognised from its size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from ._callbacks import CancelCallback, ProgressCallback, check_cancelled, report

#: Modalities whose series are image volumes this tool can read.
VOLUME_MODALITIES = ("CT", "PT")

#: Header elements study discovery needs (reading only these is several times faster).
DISCOVERY_TAGS = (
    "SOPClassUID", "Modality", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
    "SeriesDescription", "StudyDescription", "SeriesNumber", "ImageType", "PatientID",
    "StudyDate", "Rows", "Columns", "BitsAllocated", "SamplesPerPixel", "NumberOfFrames",
    "CorrectedImage", "Units",
)


class UnreadableDicom(Exception):
    """A file that cannot be used as a DICOM image slice; ``reason`` says why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass
class DicomSeries:
    """The files of one SeriesInstanceUID and their headers (same order)."""

    series_uid: str
    modality: str
    description: str
    study_uid: str | None
    frame_of_reference_uid: str | None
    files: list[Path] = field(default_factory=list)
    headers: list[Dataset] = field(default_factory=list)

    @property
    def folders(self) -> set[Path]:
        return {path.parent for path in self.files}

    @property
    def image_type(self) -> list[str]:
        value = self.headers[0].get("ImageType", []) if self.headers else []
        return [str(v).upper() for v in ([value] if isinstance(value, str) else value)]

    def summary(self) -> str:
        """One line for messages: UID, modality, description, number of files."""
        description = f" '{self.description}'" if self.description else ""
        return (
            f"{self.modality or '?'}{description} ({len(self.files)} files), "
            f"SeriesInstanceUID {self.series_uid}"
        )


def read_header(path: Path, *, tags: Sequence[str] | None = None) -> Dataset:
    """The header of one DICOM file, without pixel data.

    Raises :class:`UnreadableDicom` for non-DICOM files, broken headers and files whose
    pixel data is shorter than the header announces.
    """
    try:
        with open(path, "rb") as handle:
            ds = pydicom.dcmread(
                handle,
                stop_before_pixels=True,
                specific_tags=list(tags) if tags else None,
            )
            pixel_offset = handle.tell()
            size = os.fstat(handle.fileno()).st_size
    except InvalidDicomError:
        raise UnreadableDicom(path, "not a DICOM file") from None
    except FileNotFoundError:
        raise UnreadableDicom(path, "file not found") from None
    except Exception as exc:  # pydicom raises many types on damaged files
        raise UnreadableDicom(path, f"corrupted DICOM file ({type(exc).__name__}: {exc})") from None
    _check_complete(path, ds, size - pixel_offset)
    return ds


def _check_complete(path: Path, ds: Dataset, bytes_left: int) -> None:
    """Refuse files whose uncompressed pixel data is cut short (an interrupted copy)."""
    if "Rows" not in ds or "Columns" not in ds:
        return
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and syntax.is_compressed:
        return
    try:
        bits = int(ds.get("BitsAllocated", 16))
        expected = (
            int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
            * int(ds.get("NumberOfFrames", 1) or 1) * bits // 8
        )
    except (TypeError, ValueError):
        return
    if bytes_left < expected + 8:
        raise UnreadableDicom(
            path,
            f"truncated DICOM file: pixel data needs {expected} bytes, only {max(bytes_left, 0)} "
            "left in the file (an interrupted copy?)",
        )


def group_series(
    paths: Iterable[Path],
    *,
    tags: Sequence[str] | None = None,
    total: int | None = None,
    progress: ProgressCallback = None,
    cancel: CancelCallback = None,
) -> tuple[list[DicomSeries], list[tuple[Path, str]]]:
    """Series (by SeriesInstanceUID, in first-seen order) and the files that are not usable."""
    series: dict[str, DicomSeries] = {}
    rejected: list[tuple[Path, str]] = []
    for index, path in enumerate(paths):
        if index % 32 == 0:
            check_cancelled(cancel, "Reading DICOM headers")
            if total:
                report(progress, index / total, "reading DICOM headers")
        try:
            ds = read_header(path, tags=tags)
        except UnreadableDicom as exc:
            rejected.append((path, exc.reason))
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        if not uid:
            reason = (
                "DICOMDIR (a media index, not an image)"
                if "DirectoryRecordSequence" in ds
                else "DICOM header without SeriesInstanceUID (0020,000E): corrupted or not an image"
            )
            rejected.append((path, reason))
            continue
        entry = series.get(uid)
        if entry is None:
            entry = series[uid] = DicomSeries(
                series_uid=uid,
                modality=str(ds.get("Modality", "") or "").upper(),
                description=str(ds.get("SeriesDescription", "") or ""),
                study_uid=str(ds.get("StudyInstanceUID", "") or "") or None,
                frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or "") or None,
            )
        entry.files.append(path)
        entry.headers.append(ds)
    return list(series.values()), rejected


def files_in_folder(folder: Path) -> list[Path]:
    """The regular, non-hidden files directly inside ``folder``, sorted by name."""
    with os.scandir(folder) as entries:
        return sorted(
            Path(entry.path)
            for entry in entries
            if entry.is_file() and not entry.name.startswith(".")
        )
