"""Model zips unpacked into a folder private to this process, so no unpacked copy outlives its use.

Each process unpacks under ``<tmp>/attumamba-models-<pid>-<start>-<random>`` (made by
``mkdtemp``: mode 0700, a name nobody can claim first). A package's copy goes when the package
object is dropped, a failed extraction at once, the whole folder at exit; and the folders of
processes that died without cleaning up (killed, power loss) go at the next start. A folder is
another process's while a process with its pid *and* its start time runs, so a reused pid never
hands a live folder to the sweep, and folders of other users, links and odd names are never touched.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path

import psutil

PREFIX = "attumamba-models-"
_NAME = re.compile(rf"^{re.escape(PREFIX)}(\d+)-(\d+)-")
_folders: dict[Path, Path] = {}  # temporary root → this process's folder in it
_lock = threading.Lock()


def process_folder() -> Path:
    """This process's folder under the current temporary root (made, after a sweep, on first use)."""
    root = Path(tempfile.gettempdir())
    with _lock:
        folder = _folders.get(root)
        if folder is None or not folder.is_dir():
            remove_dead_leftovers(root)
            folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-{_start_stamp(os.getpid())}-", dir=root))
            _folders[root] = folder
    return folder


def unpack(archive: zipfile.ZipFile) -> Path:
    """Extract ``archive`` into a new folder of this process; nothing is left behind when it fails."""
    target = Path(tempfile.mkdtemp(prefix="package-", dir=process_folder()))
    try:
        archive.extractall(target)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target


def remove_dead_leftovers(root: Path | None = None) -> list[Path]:
    """Remove the folders of processes that no longer run; returns what was removed."""
    root = Path(root or tempfile.gettempdir())
    removed = []
    for entry in root.glob(f"{PREFIX}*"):
        match = _NAME.match(entry.name)
        if match is None or entry in _folders.values() or not _ours(entry):
            continue
        pid, stamp = int(match[1]), int(match[2])
        if _runs(pid, stamp):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _ours(entry: Path) -> bool:
    """A real folder (not a link) of this user."""
    try:
        info = entry.lstat()
    except OSError:
        return False
    owner_ok = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    return entry.is_dir() and not entry.is_symlink() and owner_ok


def _start_stamp(pid: int) -> int | None:
    try:
        return int(psutil.Process(pid).create_time())
    except psutil.NoSuchProcess:
        return None


def _runs(pid: int, stamp: int) -> bool:
    """Whether the process that made a folder still runs (when in doubt: yes, and the folder stays)."""
    try:
        started = _start_stamp(pid)
    except (psutil.AccessDenied, OSError):
        return True
    return started is not None and abs(started - stamp) <= 1


@atexit.register
def _remove_own_folders() -> None:
    for folder in list(_folders.values()):
        shutil.rmtree(folder, ignore_errors=True)
    _folders.clear()
