"""Volume files sent by clients: streamed to a private temporary file with a byte cap, header
read before voxels, checked, then deleted; and volumes sent back as NRRD bytes.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..inference.pipeline import check_pet_is_suv
from ..io import check_same_space
from .studies import Limits

SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
CHUNK = 1 << 20


def read_upload(stream: BinaryIO, filename: str | None, what: str, limits: Limits) -> sitk.Image:
    """A 3D volume from an uploaded file object; InputError for anything that is not one."""
    suffix = next((s for s in SUFFIXES if (filename or "").lower().endswith(s)), None)
    if suffix is None:
        raise InputError(f"{what}: the file name {filename!r} has no known volume suffix ({', '.join(SUFFIXES)})")
    folder = Path(tempfile.mkdtemp(prefix="attumamba-upload-"))
    try:
        path = folder / f"volume{suffix}"
        written = 0
        with path.open("wb") as handle:
            while chunk := stream.read(CHUNK):
                written += len(chunk)
                if written > limits.max_upload_bytes:
                    raise InputError(f"{what} is larger than the upload limit of {limits.max_upload_bytes >> 20} MiB")
                handle.write(chunk)
        return _read_checked(path, what, limits)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _read_checked(path: Path, what: str, limits: Limits) -> sitk.Image:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InputError(f"{what} is not a readable volume (NIfTI, NRRD or MetaImage)") from None
    size = reader.GetSize()
    if len(size) != 3 or min(size) < 2:
        raise InputError(f"{what} is {len(size)}D with size {list(size)}; a 3D volume is needed")
    if int(np.prod(size, dtype=np.int64)) * max(1, reader.GetNumberOfComponents()) > limits.max_voxels:
        raise InputError(f"{what} claims {list(size)} voxels, more than the limit of {limits.max_voxels}")
    if reader.GetNumberOfComponents() != 1:
        raise InputError(f"{what} has {reader.GetNumberOfComponents()} components per voxel; give a scalar volume")
    try:
        image = reader.Execute()
    except RuntimeError:
        raise InputError(f"{what}'s voxel data cannot be read (truncated or corrupt file)") from None
    if not np.isfinite(sitk.GetArrayFromImage(image)).all():
        raise InputError(f"{what} holds NaN or infinite voxels; fix or re-export the volume")
    return image


def check_study(ct: sitk.Image, pet: sitk.Image) -> None:
    check_same_space(ct, pet)
    check_pet_is_suv(pet)


def image_bytes(image: sitk.Image) -> bytes:
    """An image as compressed NRRD bytes (written through a private temporary file)."""
    with tempfile.TemporaryDirectory(prefix="attumamba-download-") as folder:
        path = Path(folder) / "labelmap.nrrd"
        sitk.WriteImage(image, str(path), useCompression=True)
        return path.read_bytes()


def read_image_bytes(data: bytes, suffix: str = ".nrrd") -> sitk.Image:
    """The inverse of :func:`image_bytes` (for clients and tests)."""
    return read_upload(io.BytesIO(data), f"image{suffix}", "the image", Limits())
