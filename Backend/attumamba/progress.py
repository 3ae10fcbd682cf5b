"""A terminal progress bar behind the ``(fraction, stage)`` callback every long operation takes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(description: str, total: float = 1.0) -> Iterator[Callable[[float, str], None]]:
    """Yield ``progress(fraction, stage)`` drawing a tqdm bar (``fraction`` of ``total``)."""
    from tqdm import tqdm

    with tqdm(total=total, desc=description, bar_format="{l_bar}{bar}| {postfix}") as bar:

        def progress(fraction: float, stage: str) -> None:
            bar.n = round(fraction * total, 3)
            bar.set_postfix_str(stage, refresh=True)

        yield progress
