"""What a study's inputs were when they were found, and whether a record still matches them.

Results kept on disk (a batch's ``studies/<id>/``, a ``segment -o`` folder) record the inputs
they were made from: the absolute CT and PET paths, the DICOM series UIDs, and a content
fingerprint taken at discovery. The fingerprint is each input file's name, size and
modification time (``st_mtime_ns``): a stat per file, no pixel data and no hashing of
gigabytes, yet any copy, rewrite or added/removed slice changes it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

ROLES = ("ct", "pet")


def files_fingerprint(paths: Iterable[Path]) -> dict:
    """Count, total size, newest modification time and a digest of (name, size, mtime) per file."""
    entries = []
    for path in sorted(Path(p) for p in paths):
        try:
            info = os.stat(path)
            entries.append((path.name, info.st_size, info.st_mtime_ns))
        except OSError:  # gone since it was listed: the fingerprint says so
            entries.append((path.name, -1, -1))
    digest = hashlib.sha256(json.dumps(entries).encode()).hexdigest()
    return {"files": len(entries), "bytes": sum(max(size, 0) for _, size, _ in entries),
            "newest_mtime_ns": max((mtime for _, _, mtime in entries), default=-1), "sha256": digest}


def path_fingerprint(path: Path) -> dict:
    """The fingerprint of a volume file, or of every file directly in a DICOM series folder."""
    path = Path(path)
    files = [p for p in path.iterdir() if p.is_file()] if path.is_dir() else [path]
    return files_fingerprint(files)


def absolute(path: str | Path) -> str:
    """A path as recorded: absolute, so a record does not depend on the working folder."""
    return os.path.abspath(os.path.expanduser(str(path)))


def inputs_change(recorded: dict, current: dict) -> str:
    """Why results recorded for ``recorded`` inputs are not results of ``current`` ('' when they are).

    Both are input records (``ct``, ``pet``, optional ``kind`` and series UIDs, ``fingerprint``).
    Different paths or series mean the results are another study's; same paths with another
    fingerprint (or none, from an earlier version) mean the files changed since.
    """
    identity = [key for key in ("kind", "ct_series_uid", "pet_series_uid") if key in recorded and key in current]
    other = any(absolute(recorded.get(role) or "") != absolute(current[role]) for role in ROLES)
    if other or any(recorded[key] != current[key] for key in identity):
        return (f"the folder was another study's (its results are of CT {recorded.get('ct')} and PET "
                f"{recorded.get('pet')})")
    before = recorded.get("fingerprint")
    if not isinstance(before, dict) or any(not isinstance(before.get(role), dict) for role in ROLES):
        return "inputs changed: no input fingerprint was recorded (results of an earlier version), so they cannot be trusted"
    changes = [_describe(role, before[role], current["fingerprint"][role]) for role in ROLES
               if before[role] != current["fingerprint"][role]]
    return "inputs changed: " + "; ".join(changes) if changes else ""


def _describe(role: str, before: dict, now: dict) -> str:
    name = role.upper()
    if before.get("files") != now.get("files"):
        return f"{name} has {now.get('files')} files, had {before.get('files')}"
    if before.get("bytes") != now.get("bytes"):
        return f"{name} is {now.get('bytes')} bytes, was {before.get('bytes')}"
    return f"{name} files were modified or renamed since"
