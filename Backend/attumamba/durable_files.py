"""Files and folders that are either whole or absent after a crash or a power loss.

Every result is written into a temporary name beside its final place, flushed to the disk
(``fsync`` of each file, then of the folder that holds them) and only then renamed into place;
the folder holding the new name is flushed after the rename so the rename itself survives.
Without the flushes a journaling file system may keep the rename but not the data, leaving an
empty ``study.json`` that looks finished.

Permissions: one rule for every output, the process's umask (files 0o666, folders 0o777, less
the umask), as for any file the user's own tools write. A site that keeps patient data private
sets ``umask 077`` (or writes into a private folder) and then every output, tables included,
is private; a lab that shares results through a group keeps its group-readable umask. Mixing
0600 temporary-file modes with umask modes protected nothing and surprised both.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

REPLACED_SUFFIX = ".replaced"
TEMPORARY_SUFFIX = ".tmp"


def write_durably(path: Path, data: bytes | str) -> Path:
    """Create ``path`` (it must not exist), write ``data`` and flush it to the disk."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    handle = os.open(path, flags, 0o666)  # the umask applies, as for every other output
    with os.fdopen(handle, "wb") as stream:
        stream.write(data.encode() if isinstance(data, str) else data)
        stream.flush()
        os.fsync(stream.fileno())
    return path


def fsync_file(path: Path) -> None:
    """Flush a file that another library wrote (SimpleITK, a report writer) to the disk."""
    access = os.O_RDWR if os.name == "nt" else os.O_RDONLY  # Windows flushes only what it may write
    handle = os.open(path, access | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def fsync_folder(path: Path) -> None:
    """Flush a folder's entries (new names, renames) to the disk; Windows has no such call."""
    if os.name == "nt":
        return
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Replace ``path`` with ``data`` in one rename, after the new bytes are on the disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}{TEMPORARY_SUFFIX}"
    try:
        write_durably(temporary, data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
    return path


def seal_folder(folder: Path) -> None:
    """Flush every file of a freshly assembled folder, then the folder itself."""
    for path in folder.iterdir():
        if path.is_file():
            fsync_file(path)
    fsync_folder(folder)


def replace_folder(new: Path, final: Path) -> Path:
    """Put the complete folder ``new`` at ``final``; an old ``final`` goes only after ``new`` is there.

    Folders cannot be swapped in one portable rename, so the old one is first renamed aside
    (``.<name>.replaced``, hidden) and deleted once the new one is in place: a crash in between
    leaves the new results complete beside ``final`` and the old ones aside, never a mix of both.
    """
    aside = final.parent / f".{final.name}{REPLACED_SUFFIX}"
    moved_aside = final.exists()
    if moved_aside:
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(final, aside)
    try:
        os.replace(new, final)
    except BaseException:
        if moved_aside:
            os.replace(aside, final)
        raise
    fsync_folder(final.parent)
    shutil.rmtree(aside, ignore_errors=True)
    return final
