"""``load_volume``: one entry point for every volume a user can hand the tool.

A DICOM series folder (or one file of it), NIfTI, NRRD or MetaImage all come back as a
SimpleITK image in LPS with its geometry untouched, tagged with ``attumamba.*`` metadata
(modality, units, UIDs) that later steps use to check and report. A PET series from DICOM
comes back in SUVbw; other formats carry no dose or weight and are returned as stored.
"""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from ..errors import InputError
from ._callbacks import CancelCallback, ProgressCallback, check_cancelled, report
from .dicom_headers import UnreadableDicom, read_header
from .dicom_series import (
    KEY_MODALITY,
    KEY_SOURCE,
    KEY_UNITS,
    PetUnits,
    read_dicom_series,
)

#: File endings SimpleITK reads as one volume, longest first so ".nii.gz" wins over ".gz".
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def volume_suffix(path: Path) -> str | None:
    """The volume file ending of ``path`` (case-insensitive), or None."""
    name = path.name.lower()
    return next((suffix for suffix in VOLUME_SUFFIXES if name.endswith(suffix)), None)


def load_volume(
    path: str | Path,
    *,
    pet_units: PetUnits = "auto",
    series_uid: str | None = None,
    progress: ProgressCallback = None,
    cancel: CancelCallback = None,
) -> sitk.Image:
    """Read a 3D volume from a DICOM series folder or a NIfTI/NRRD/MHA file.

    ``pet_units="auto"`` converts a DICOM PET series to SUVbw (float32); ``"raw"`` keeps its
    stored units (usually Bq/mL). ``series_uid`` picks one series from a folder that holds
    several. Raises :class:`InputError` with what was wrong and what to do.
    """
    if pet_units not in ("auto", "raw"):
        raise InputError(f"pet_units must be 'auto' or 'raw', not {pet_units!r}.")
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(
            f"{path} does not exist: pass a DICOM series folder or a .nii/.nii.gz/.nrrd/.mha file."
        )
    check_cancelled(cancel, "Loading the volume")
    if path.is_dir():
        return read_dicom_series(
            path, series_uid=series_uid, pet_units=pet_units, progress=progress, cancel=cancel
        )
    if volume_suffix(path) is not None:
        report(progress, 0.0, f"reading {path.name}")
        image = _read_volume_file(path)
        report(progress, 1.0, "done")
        return image
    return _read_dicom_file_series(path, series_uid, pet_units, progress, cancel)


def _read_volume_file(path: Path) -> sitk.Image:
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise InputError(
            f"Cannot read {path}: the file is damaged or not a valid {volume_suffix(path)} "
            f"volume ({first_line})."
        ) from None
    if image.GetDimension() != 3:
        raise InputError(
            f"{path} is a {image.GetDimension()}D image: a 3D volume is needed "
            "(a dynamic 4D PET must be summed or split into frames first)."
        )
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{path} has {image.GetNumberOfComponentsPerPixel()} values per voxel (colour or "
            "vector image): a scalar CT or PET volume is needed."
        )
    for key in image.GetMetaDataKeys():
        if key.startswith("attumamba."):
            image.EraseMetaData(key)
    image.SetMetaData(KEY_MODALITY, "unknown")
    image.SetMetaData(KEY_UNITS, "unknown")
    image.SetMetaData(KEY_SOURCE, str(path))
    return image


def _read_dicom_file_series(
    path: Path,
    series_uid: str | None,
    pet_units: PetUnits,
    progress: ProgressCallback,
    cancel: CancelCallback,
) -> sitk.Image:
    """One DICOM file stands for its whole series, read from its folder."""
    try:
        header = read_header(path, tags=["SeriesInstanceUID"])
    except UnreadableDicom as exc:
        raise InputError(
            f"Cannot read {path}: {exc.reason}. Pass a DICOM series folder or a "
            ".nii/.nii.gz/.nrrd/.nhdr/.mha/.mhd file."
        ) from None
    own_uid = str(header.get("SeriesInstanceUID", "") or "") or None
    if own_uid is None:
        raise InputError(f"{path} has no SeriesInstanceUID (0020,000E): it is not an image slice.")
    return read_dicom_series(
        path.parent,
        series_uid=series_uid or own_uid,
        pet_units=pet_units,
        progress=progress,
        cancel=cancel,
    )
