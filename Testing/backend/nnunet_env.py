"""nnU-Net's folders for a test: ``nnUNet_raw``/``preprocessed``/``results`` under one root."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

KEYS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_n_proc_DA")


@contextmanager
def nnunet_folders(root: Path) -> Iterator[Path]:
    """Point nnU-Net at ``root/raw|preprocessed|results`` (one augmentation worker) for the block."""
    saved = {k: os.environ.get(k) for k in KEYS}
    os.environ.update(nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "preprocessed"),
                      nnUNet_results=str(root / "results"), nnUNet_n_proc_DA="1")
    try:
        yield root
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
