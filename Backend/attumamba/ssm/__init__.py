"""Mamba building blocks that run everywhere.

- :func:`selective_scan` — mamba-ssm's ``selective_scan_fn`` contract; its CUDA kernel where
  available, otherwise our exact scan (compiled CPU kernel, or chunked PyTorch).
- :class:`Mamba` — drop-in for ``mamba_ssm.Mamba`` (same parameters, so state dicts load either way).
- :func:`scan_backend` — what selective_scan runs on a device (for health reports and logs).

Importing this package never imports mamba-ssm; it is looked up on first CUDA use only.
"""

from __future__ import annotations

from .dispatch import scan_backend, selective_scan
from .mamba import Mamba

__all__ = ["Mamba", "scan_backend", "selective_scan"]
