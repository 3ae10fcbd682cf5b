"""Where a volume file keeps its voxels: in the file itself, or in files its header names.

A NRRD header's ``data file:`` field and a MetaImage header's ``ElementDataFile`` may name any
path, and ITK opens it: a five-line ``.mhd`` returns ``/etc/passwd`` as voxels, ``/dev/zero`` as
gigabytes, a FIFO hangs the reader. A NIfTI file with magic ``n+1``/``n+2`` holds its voxels;
``ni1``/``ni2`` mean a separate ``.img``. Two rules share the one parser here:

- a file a client uploads must be self-contained (:func:`check_self_contained`);
- a volume that batch discovery finds on the server's disk may keep its voxels in another file
  only inside the header's own folder (:func:`detached_data_problem`).

The parser errs on the side of refusing. NRRD lines end at ``\\n``, ``\\r`` or ``\\r\\n`` and field
names match in any case and spacing (``DATA FILE``, ``datafile``), as in teem; a MetaImage header
must name its data file once, in MetaIO's exact spelling, with nothing before it that another
reader could take for a second one.
"""

from __future__ import annotations

import gzip
import re
import stat
import struct
import zlib
from pathlib import Path

from ..errors import InputError

#: What clients may upload (self-contained formats), and the detached-header ones they may not.
UPLOAD_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
DETACHED_SUFFIXES = (".nhdr", ".mhd")
#: The ITK reader each accepted suffix is read with: no reader is chosen by sniffing the content.
IMAGE_IO = {".nii.gz": "NiftiImageIO", ".nii": "NiftiImageIO", ".nrrd": "NrrdImageIO", ".mha": "MetaImageIO"}
#: A header that has not ended after this many bytes is refused (real ones are a few KiB).
HEADER_LIMIT = 1 << 20
#: MetaIO's spellings of "the voxels follow this header".
LOCAL_DATA = ("LOCAL", "Local", "local")
SELF_CONTAINED = "send a self-contained .nrrd, .mha or .nii.gz file instead (e.g. Slicer: Save as .nrrd)"

_LINE_END = re.compile(rb"\r\n|\r|\n")
_ELEMENT_DATA_FILE = re.compile(rb"\s*ElementDataFile[ \t]*[=:](.*)")
_NIFTI_SINGLE = (b"n+1\0", b"n+2\0")
_NIFTI_PAIR = (b"ni1\0", b"ni2\0")


def upload_suffix(filename: str | None, what: str) -> str:
    """The accepted volume suffix of an uploaded file's name (any case); InputError otherwise."""
    name = (filename or "").lower()
    detached = next((s for s in DETACHED_SUFFIXES if name.endswith(s)), None)
    if detached is not None:
        raise InputError(f"{what}: {filename!r} is a {detached} header, whose voxels lie in a separate file "
                         f"that the server does not read; {SELF_CONTAINED}")
    suffix = next((s for s in UPLOAD_SUFFIXES if name.endswith(s)), None)
    if suffix is None:
        raise InputError(f"{what}: the file name {filename!r} has no accepted volume suffix "
                         f"({', '.join(UPLOAD_SUFFIXES)})")
    return suffix


def check_self_contained(path: Path, suffix: str, what: str) -> None:
    """Refuse unless ``path``'s content is the format ``suffix`` names and keeps every voxel in itself."""
    if suffix in (".nii", ".nii.gz"):
        _check_nifti(path, what)
    elif suffix == ".nrrd":
        if _nrrd_data_files(_head(path), what):
            raise InputError(f"{what} is a NRRD header with a 'data file' field: its voxels lie in another file, "
                             f"which the server does not read; {SELF_CONTAINED}")
    elif suffix == ".mha":
        name = _metaimage_data_file(_head(path), what)
        if name not in LOCAL_DATA:
            raise InputError(f"{what} is a MetaImage header whose ElementDataFile is {name!r}, not LOCAL: its voxels "
                             f"lie in another file, which the server does not read; {SELF_CONTAINED}")
    else:
        raise ValueError(f"not an upload suffix: {suffix!r}")


def detached_data_problem(path: Path) -> str | None:
    """Why discovery must not read the volume file ``path``, or None when it may.

    A NRRD or MetaImage header may keep its voxels beside it (``.mhd`` + ``.raw``), but not
    outside its own folder (through ``..``, an absolute path or a symlink), and only in a
    regular file: never a FIFO or a device.
    """
    if not _is_regular(path):
        return "not a regular file (a FIFO, socket or device): not read"
    name = path.name.lower()
    try:
        if name.endswith((".nrrd", ".nhdr")):
            data_files = _nrrd_data_files(_head(path), path.name)
        elif name.endswith((".mha", ".mhd")):
            data_file = _metaimage_data_file(_head(path), path.name)
            data_files = [] if data_file in LOCAL_DATA else [data_file]
        else:
            return None  # NIfTI: a two-file pair's .img is found beside its header, by name
    except (InputError, OSError) as error:
        return str(error)
    folder = path.parent.resolve()
    for data_file in data_files:
        if data_file.upper().startswith("LIST") or "%" in data_file or len(data_file.split()) != 1:
            return (f"the header names its voxels as a file list or pattern ({data_file!r}); "
                    "convert the volume to one .nrrd or .nii.gz file")
        target = (path.parent / data_file).resolve()
        if not target.is_relative_to(folder):
            return f"the header's data file {data_file!r} lies outside the study's folder {folder}: not read"
        if not _is_regular(target):
            return f"the header's data file {data_file!r} is missing or not a regular file"
    return None


def _head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(HEADER_LIMIT + 1)


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _nrrd_data_files(head: bytes, what: str) -> list[str]:
    """The values of every ``data file`` field of a NRRD header (empty: the voxels are attached)."""
    if not head.startswith(b"NRRD000"):
        raise InputError(f"{what} does not start with a NRRD magic (NRRD000x): it is not a NRRD file; "
                         "give the file the suffix of its format")
    whole_file = len(head) <= HEADER_LIMIT
    lines = _LINE_END.split(head)
    if not whole_file:
        lines.pop()  # cut short at the limit: not a whole line
    names: list[str] = []
    for line in lines[1:]:
        if not line:
            return names  # the blank line that ends the header
        key, colon, value = line.partition(b":")
        if colon and re.sub(rb"\s", b"", key).lower() == b"datafile":
            names.append(value.strip().decode("latin-1"))
            if names[-1].upper().startswith("LIST"):
                return names  # file names follow to the end of the header file
    if whole_file:
        return names  # a detached header (.nhdr) ends with its file
    raise InputError(f"{what}: the NRRD header does not end (no blank line) within its first "
                     f"{HEADER_LIMIT >> 10} KiB; it is not a valid NRRD file")


def _metaimage_data_file(head: bytes, what: str) -> str:
    """The ``ElementDataFile`` value of a MetaImage header (``LOCAL``: the voxels follow it)."""
    for line in head.split(b"\n")[:-1]:
        match = _ELEMENT_DATA_FILE.match(line)
        if match is not None:
            return match.group(1).strip().decode("latin-1")
        if b"elementdatafile" in line.lower():
            raise InputError(f"{what}: the MetaImage header has an ElementDataFile line that is not in the standard "
                             "'ElementDataFile = LOCAL' form; re-save the volume")
    raise InputError(f"{what}: no 'ElementDataFile' line within the first {HEADER_LIMIT >> 10} KiB; "
                     "it is not a MetaImage (.mha) file")


def _check_nifti(path: Path, what: str) -> None:
    try:
        with path.open("rb") as handle:
            gzipped = handle.read(2) == b"\x1f\x8b"
        with gzip.open(path, "rb") if gzipped else path.open("rb") as handle:
            head = handle.read(548)  # a NIfTI-2 header (540 bytes) and its extension flag
    except (OSError, EOFError, zlib.error):
        raise InputError(f"{what} is not a readable (gzip-compressed) NIfTI file") from None
    magic = _nifti_magic(head)
    if magic in _NIFTI_SINGLE:
        return
    if magic in _NIFTI_PAIR:
        raise InputError(f"{what} is a NIfTI header whose voxels lie in a separate .img file, which the server "
                         f"does not read; {SELF_CONTAINED}")
    raise InputError(f"{what} is named like a NIfTI file but has no NIfTI-1/NIfTI-2 magic; give the file "
                     "the suffix of its format")


def _nifti_magic(head: bytes) -> bytes:
    """The magic of a NIfTI-1 (header size 348) or NIfTI-2 (540) header, in either byte order."""
    size = head[:4]
    if size in (struct.pack("<i", 348), struct.pack(">i", 348)):
        return head[344:348]
    if size in (struct.pack("<i", 540), struct.pack(">i", 540)):
        return head[4:8]
    return b""
