"""Volume files sent by clients: streamed to a private temporary file with a byte cap, checked
to be self-contained, header read and checked before any voxel is decoded, then deleted; and
volumes sent back as NRRD bytes.

What a client may send is a self-contained file: ``.nii``/``.nii.gz``, ``.nrrd`` with attached
data, ``.mha`` (:mod:`attumamba.io.volume_headers`, which checks the content, not only the name),
read with the ITK reader of its suffix, never one picked by sniffing the content (SimpleITK
reads DICOM, TIFF, HDF5, PNG... by content whatever the name).

A volume's decoded size (voxels × bytes per voxel, from the header) is capped by
``Limits.max_decoded_bytes`` before any voxel is read, so a small compressed file cannot expand
into gigabytes. Its default, 2 GiB, equals the default upload cap: compression lets no file
decode to more than the largest uncompressed file the service takes, which still holds a
thin-slice whole-body CT (512 × 512 × 2048 float32, or × 4096 int16). float64 CT/PET voxels are
read as float32 (all that the models and SUV need, half the memory; ITK holds both buffers for a
moment: 1.5× the cap at most). NaN/inf are found on a view of the image, a slab at a time.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

import SimpleITK as sitk

from ..errors import InputError
from ..inference.pipeline import check_pet_is_suv
from ..io import check_same_space
from ..io.volume_headers import IMAGE_IO, check_self_contained, upload_suffix
from ..io.voxel_checks import all_finite
from .studies import Limits

CHUNK = 1 << 20


def read_upload(stream: BinaryIO, filename: str | None, what: str, limits: Limits, *,
                labels: bool = False) -> sitk.Image:
    """A 3D volume from an uploaded file object; InputError for anything that is not one.

    ``labels``: a labelmap keeps its pixel type (label values must stay exact).
    """
    suffix = upload_suffix(filename, what)
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
        check_self_contained(path, suffix, what)
        return _read_checked(path, suffix, what, limits, labels)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _read_checked(path: Path, suffix: str, what: str, limits: Limits, labels: bool) -> sitk.Image:
    reader = sitk.ImageFileReader()
    reader.SetImageIO(IMAGE_IO[suffix])
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InputError(f"{what} is not a readable volume (NIfTI, NRRD or MetaImage)") from None
    size, components = reader.GetSize(), reader.GetNumberOfComponents()
    if len(size) != 3 or min(size) < 2:
        raise InputError(f"{what} is {len(size)}D with size {list(size)}; a 3D volume is needed")
    voxels = size[0] * size[1] * size[2] * max(1, components)
    decoded = voxels * _component_bytes(reader.GetPixelID())
    if decoded > limits.max_decoded_bytes:
        raise InputError(f"{what} would decode to {decoded / 2 ** 20:,.0f} MiB ({list(size)} voxels of "
                         f"{sitk.GetPixelIDValueAsString(reader.GetPixelID())}), more than the limit of "
                         f"{limits.max_decoded_bytes >> 20} MiB per volume; crop or resample it, or store it as "
                         "16-bit integers or 32-bit floats")
    if voxels > limits.max_voxels:
        raise InputError(f"{what} claims {list(size)} voxels, more than the limit of {limits.max_voxels}")
    if components != 1:
        raise InputError(f"{what} has {components} components per voxel; give a scalar volume")
    if reader.GetPixelID() == sitk.sitkFloat64 and not labels:
        reader.SetOutputPixelType(sitk.sitkFloat32)
    try:
        image = reader.Execute()
    except RuntimeError:
        raise InputError(f"{what}'s voxel data cannot be read (truncated or corrupt file)") from None
    if not all_finite(image):
        raise InputError(f"{what} holds NaN or infinite voxels (or values beyond 32-bit float); fix or re-export "
                         "the volume")
    return image


def _component_bytes(pixel_id: int) -> int:
    """Bytes per component of an ITK pixel type (from a one-voxel image: no table to keep in step)."""
    return sitk.Image([1, 1, 1], pixel_id).GetSizeOfPixelComponent()


def check_study(ct: sitk.Image, pet: sitk.Image) -> None:
    check_same_space(ct, pet)
    check_pet_is_suv(pet)


def image_bytes(image: sitk.Image) -> bytes:
    """An image as compressed NRRD bytes (written through a private temporary file)."""
    with tempfile.TemporaryDirectory(prefix="attumamba-download-") as folder:
        path = Path(folder) / "labelmap.nrrd"
        sitk.WriteImage(image, str(path), useCompression=True)
        return path.read_bytes()


def transform_bytes(transform: sitk.Transform) -> bytes:
    """A transform as ITK HDF5 bytes (``.h5``: composite and B-spline transforms included)."""
    with tempfile.TemporaryDirectory(prefix="attumamba-download-") as folder:
        path = Path(folder) / "transform.h5"
        sitk.WriteTransform(transform, str(path))
        return path.read_bytes()


def read_image_bytes(data: bytes, suffix: str = ".nrrd") -> sitk.Image:
    """The inverse of :func:`image_bytes` (for clients and tests)."""
    return read_upload(io.BytesIO(data), f"image{suffix}", "the image", Limits(), labels=True)
