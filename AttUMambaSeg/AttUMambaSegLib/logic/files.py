"""Atomic file writes: a reader never sees half a file, and a failed write leaves the old file intact.

The temporary file sits in the target's folder (``os.replace`` is atomic only within one file
system) and ends with the target's full name, so writers that choose the format by suffix
(SimpleITK, MRML storage nodes: ``.nii.gz``, ``.seg.nrrd``) still pick the right one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_target(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``target``, on failure it is removed."""
    target = Path(target)
    temporary = target.with_name(f".{uuid.uuid4().hex[:12]}-{target.name}")
    try:
        yield temporary
        if not temporary.is_file():
            raise OSError(f"nothing was written for {target}")
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_text_atomic(target: str | Path, text: str) -> Path:
    with atomic_target(target) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(target)
