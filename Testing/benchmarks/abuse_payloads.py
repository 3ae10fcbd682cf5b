"""Hostile inputs for ``bench_abuse.py``: files that lie about themselves, and requests that should
never have been sent. Each maker returns a small, deterministic (for its seed) payload; nothing
here touches the network.
"""

from __future__ import annotations

import gzip
import io
import os
import random
import struct
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def small_volume_bytes(suffix: str, shape=(8, 8, 8), dtype=np.float32, value: float = 1.0) -> bytes:
    """A genuine little volume in the given format (SimpleITK writes it)."""
    image = sitk.GetImageFromArray(np.full(shape[::-1], value, dtype=dtype))
    image.SetSpacing((4.0, 4.0, 4.0))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"v{suffix}"
        sitk.WriteImage(image, str(path))
        return path.read_bytes()


def nifti_header(shape: tuple[int, int, int], datatype: int = 16, bitpix: int = 32, vox_offset: float = 352.0,
                 pixdim: tuple[float, float, float] = (4.0, 4.0, 4.0)) -> bytes:
    """A NIfTI-1 header (348 bytes + 4 extension bytes) that says whatever we ask it to."""
    header = bytearray(348)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, *shape, 1, 1, 1, 1)
    struct.pack_into("<hh", header, 70, datatype, bitpix)
    struct.pack_into("<8f", header, 76, 1.0, *pixdim, 1.0, 1.0, 1.0, 1.0)
    struct.pack_into("<f", header, 108, vox_offset)
    struct.pack_into("<f", header, 112, 1.0)          # scl_slope
    struct.pack_into("<hh", header, 252, 1, 0)        # qform_code, sform_code
    header[344:348] = b"n+1\0"
    return bytes(header) + b"\0\0\0\0"


def compressed_bomb(shape=(1024, 1024, 512)) -> bytes:
    """A .nii.gz of float64 zeros: a few MiB on the wire, 4 GiB decoded."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9) as stream:
        stream.write(nifti_header(shape, datatype=64, bitpix=64))
        zeros = bytes(1 << 24)
        remaining = int(np.prod(shape)) * 8
        while remaining > 0:
            stream.write(zeros[: min(len(zeros), remaining)])
            remaining -= len(zeros)
    return buffer.getvalue()


def nrrd_header(sizes: str, extra: str = "", encoding: str = "raw", kind: str = "double") -> bytes:
    return (f"NRRD0004\ntype: {kind}\ndimension: 3\nsizes: {sizes}\nspace: left-posterior-superior\n"
            f"space directions: (4,0,0) (0,4,0) (0,0,4)\nspace origin: (0,0,0)\nencoding: {encoding}\n{extra}\n"
            ).encode()


def metaimage_header(data_file: str, dims: str = "64 64 64", element: str = "MET_FLOAT") -> bytes:
    return (f"ObjectType = Image\nNDims = 3\nDimSize = {dims}\nElementSpacing = 4 4 4\nElementType = {element}\n"
            f"ElementDataFile = {data_file}\n").encode()


def secret_file(folder: Path) -> Path:
    """A file the server can read but no client should: the target of the file-reading uploads."""
    path = folder / "not-for-clients.bin"
    path.write_bytes(b"SECRET" * 4096)
    return path


class Payloads:
    """Random hostile volume files: ``(filename, bytes)`` with a label saying what the lie is."""

    def __init__(self, seed: int, secret: Path):
        self.rng = random.Random(seed)
        self.secret = secret
        self._bomb: bytes | None = None
        self._labelmaps: dict[tuple, bytes] = {}

    def bomb(self) -> bytes:
        if self._bomb is None:
            self._bomb = compressed_bomb()
        return self._bomb

    def volume(self) -> tuple[str, str, bytes]:
        """One hostile volume file (label, filename, content)."""
        rng = self.rng
        choice = rng.randrange(12)
        if choice == 0:
            suffix = rng.choice(VOLUME_SUFFIXES)
            return "random bytes", f"x{suffix}", os.urandom(rng.randrange(1, 4096))
        if choice == 1:
            shape = tuple(rng.choice((1, 2, 7, 30000, 32767)) for _ in range(3))
            return "lying NIfTI size", "x.nii", nifti_header(shape) + os.urandom(1024)
        if choice == 2:
            header = nifti_header((16, 16, 16), datatype=rng.choice((0, 2, 128, 255, 1536, 2304)),
                                  bitpix=rng.choice((0, 8, 24, 64)), vox_offset=rng.choice((0.0, 352.0, 1e9)))
            return "lying NIfTI type/offset", "x.nii", header + os.urandom(16 * 16 * 16 * 4)
        if choice == 3:
            header = nifti_header((16, 16, 16), pixdim=(rng.choice((1e6, 1e-6, -4.0, float("nan"))), 4.0, 4.0))
            return "absurd NIfTI spacing", "x.nii", header + bytes(16 * 16 * 16 * 4)
        if choice == 4:
            return "compressed bomb", "x.nii.gz", self.bomb()
        if choice == 5:
            extra = f"data file: {self.secret}"
            return "NRRD with a detached data file", rng.choice(("x.nrrd", "x.nhdr")), nrrd_header("64 64 64", extra)
        if choice == 6:
            return "lying NRRD size", "x.nrrd", nrrd_header("100000 100000 100000") + os.urandom(2048)
        if choice == 7:
            return "NRRD gzip garbage", "x.nrrd", nrrd_header("64 64 64", encoding="gzip") + os.urandom(2048)
        if choice == 8:
            target = rng.choice((str(self.secret), "/dev/zero", "/etc/hostname", "../../../../etc/hostname"))
            name = rng.choice(("x.mha", "x.mhd", "x.nii"))
            dims = rng.choice(("64 64 64", "4096 4096 4096"))
            return "MetaImage naming another file", name, metaimage_header(target, dims)
        if choice == 9:
            return "MetaImage LOCAL, lying size", "x.mha", metaimage_header("LOCAL", "5000 5000 5000") + bytes(4096)
        if choice == 10:
            value = rng.choice((float("nan"), float("inf"), 1e38))
            return "non-finite voxels", rng.choice(("x.nrrd", "x.mha", "x.nii.gz")), \
                small_volume_bytes(rng.choice((".nrrd", ".mha", ".nii.gz")), value=value)
        shape = tuple(rng.choice((1, 2, 8)) for _ in range(3))
        return "degenerate but valid file", "x.nrrd", small_volume_bytes(".nrrd", shape=shape)

    def labelmap(self, reference: sitk.Image) -> tuple[str, str, bytes]:
        """A labelmap on ``reference``'s grid for ``measure``, with a hostile label value (or a hostile file)."""
        rng = self.rng
        if rng.random() < 0.3:
            return self.volume()
        value = rng.choice((5e6, 2.0 ** 31, 2.0 ** 31 - 1, -1.0, 0.5, 2.0 ** 63, float("nan")))
        integral = bool(np.isfinite(value)) and value == int(value) and abs(value) < 2.0 ** 63
        dtype = rng.choice((np.int64, np.float64)) if integral else np.float64
        key = (value, dtype)
        if key not in self._labelmaps:
            array = np.zeros(reference.GetSize()[::-1], dtype=dtype)
            z, y, x = (n // 2 for n in array.shape)
            array[z - 2:z + 2, y - 4:y + 4, x - 4:x + 4] = value
            image = sitk.GetImageFromArray(array)
            image.CopyInformation(reference)
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "labels.nrrd"
                sitk.WriteImage(image, str(path), useCompression=True)
                self._labelmaps[key] = path.read_bytes()
        return f"labelmap value {value:g}", "labels.nrrd", self._labelmaps[key]

    def json_body(self) -> bytes:
        rng = self.rng
        return rng.choice((b"", b"{", b"[]", b"null", b'{"study_id": 5}', b'{"study_id": "x", "options": "y"}',
                           b'{"study_id": "x", "options": {"min_volume_ml": "NaN"}}', b'{"a": ' * 2000,
                           os.urandom(rng.randrange(1, 2048)), b'{"study_id": "' + b"A" * 100000 + b'"}'))
