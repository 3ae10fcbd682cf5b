"""Guarded access to mamba-ssm's CUDA kernels.

Why: mamba-ssm is a CUDA-only package whose import fails (or pulls gigabytes of GPU tooling) on a
machine without a GPU. It is looked up only when a CUDA device exists and only on first use, and
any failure to import it just means "not available": our own implementation runs instead.
"""

from __future__ import annotations

import functools
import logging
from types import ModuleType
from typing import Callable

import torch

log = logging.getLogger(__name__)


@functools.cache
def _interface() -> ModuleType | None:
    """mamba_ssm.ops.selective_scan_interface, or None (no CUDA, not installed, or broken)."""
    if not torch.cuda.is_available():
        return None
    try:
        import mamba_ssm.ops.selective_scan_interface as interface
    except Exception as exc:  # ImportError, missing extension symbols, triton errors, ...
        log.info("mamba-ssm CUDA kernels not usable (%s); using attumamba's own selective scan", exc)
        return None
    return interface


def selective_scan_fn() -> Callable | None:
    """mamba-ssm's fused selective-scan autograd function, or None."""
    interface = _interface()
    return None if interface is None else getattr(interface, "selective_scan_fn", None)


@functools.cache
def _causal_conv1d_available() -> bool:
    try:
        from causal_conv1d import causal_conv1d_fn  # noqa: F401
    except Exception:
        return False
    return True


def mamba_inner_fn() -> Callable | None:
    """mamba-ssm's fully fused Mamba block (needs causal-conv1d as well, like mamba_ssm.Mamba), or None."""
    interface = _interface()
    if interface is None or not _causal_conv1d_available():
        return None
    return getattr(interface, "mamba_inner_fn", None)


def clear_cache() -> None:
    """Forget what was found (tests that fake the environment call this)."""
    _interface.cache_clear()
    _causal_conv1d_available.cache_clear()
