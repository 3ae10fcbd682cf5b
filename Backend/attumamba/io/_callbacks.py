"""Progress and cancellation for the long reads (series of hundreds of files, whole trees)."""

from __future__ import annotations

from typing import Callable, Optional

from ..errors import CancelledError

ProgressCallback = Optional[Callable[[float, str], None]]
CancelCallback = Optional[Callable[[], bool]]


def report(progress: ProgressCallback, fraction: float, stage: str) -> None:
    """Call ``progress`` (if any) with a fraction clamped to 0..1."""
    if progress is not None:
        progress(min(1.0, max(0.0, float(fraction))), stage)


def check_cancelled(cancel: CancelCallback, what: str) -> None:
    """Stop with :class:`CancelledError` when ``cancel`` says so."""
    if cancel is not None and cancel():
        raise CancelledError(f"{what} cancelled")
