"""Everything the service keeps in memory for its clients, under one byte budget.

Uploaded studies and the results of finished jobs share ``--study-cache-mb``: when something new
does not fit, the least recently used item that no queued or running job needs goes first. An
item a job needs is pinned until the job ends, so the budget can fill with pinned items; then
new work is refused with a 503 and ``Retry-After`` instead of going over the cap. The ids of
dropped items are remembered (a bounded number) so a client learns that its study *expired*
rather than never existed.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from ..errors import InputError

Key = tuple[str, str]  # (kind, id): ("study", study_id) or ("result", job_id)
RETRY_AFTER_S = 30


class Refusal(Exception):
    """A request the service turns down for now or for good: an HTTP status, ``{error, detail}``
    and, when waiting helps, ``Retry-After``."""

    def __init__(self, status: int, error: str, detail: str, retry_after_s: int | None = None):
        super().__init__(detail)
        self.status, self.error, self.detail, self.retry_after_s = status, error, detail, retry_after_s


@dataclass
class _Held:
    value: object
    nbytes: int
    pins: int = 0
    last_used: float = field(default_factory=time.monotonic)


class Holdings:
    """Thread-safe items by key, least recently used first out when over ``limit_bytes`` or unused
    for ``ttl_s``; pinned items never go."""

    def __init__(self, limit_bytes: int, ttl_s: float, remember_gone: int = 4096):
        self.limit_bytes, self.ttl_s, self.remember_gone = limit_bytes, ttl_s, remember_gone
        self._items: OrderedDict[Key, _Held] = OrderedDict()
        self._gone: OrderedDict[Key, str] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: Key, value: object, nbytes: int, what: str, *, pin: bool = False) -> None:
        """Hold ``value``; InputError when it can never fit, :class:`Refusal` (503) while pinned items
        fill the budget."""
        if nbytes > self.limit_bytes:
            raise InputError(f"{what} needs {_mib(nbytes)} MiB, more than the service's memory cap of "
                             f"{_mib(self.limit_bytes)} MiB (serve --study-cache-mb)")
        with self._lock:
            self._expire()
            self._make_room(nbytes, what)
            self._items[key] = _Held(value, nbytes, pins=int(pin))
            self._gone.pop(key, None)

    def get(self, key: Key, *, pin: bool = False) -> object | None:
        """The value (now the most recently used), pinned once more if asked; None when not held."""
        with self._lock:
            self._expire()
            held = self._items.get(key)
            if held is None:
                return None
            held.last_used = time.monotonic()
            held.pins += int(pin)
            self._items.move_to_end(key)
            return held.value

    def unpin(self, key: Key) -> None:
        with self._lock:
            held = self._items.get(key)
            if held is not None and held.pins:
                held.pins -= 1
                held.last_used = time.monotonic()

    def discard(self, key: Key, reason: str) -> None:
        with self._lock:
            if self._items.pop(key, None) is not None:
                self._remember(key, reason)

    def why_gone(self, key: Key) -> str | None:
        """Why a key that was held is not any more; None for keys never held (or long forgotten)."""
        with self._lock:
            self._expire()
            return self._gone.get(key)

    def usage(self) -> dict:
        with self._lock:
            self._expire()
            kinds: dict[str, int] = {}
            for kind, _ in self._items:
                kinds[kind] = kinds.get(kind, 0) + 1
            return {"limit_bytes": self.limit_bytes, "held_bytes": self._held_bytes(),
                    "pinned_bytes": sum(h.nbytes for h in self._items.values() if h.pins), "items": kinds}

    def holds(self, key: Key) -> bool:
        """Whether ``key`` is held (without counting as a use)."""
        with self._lock:
            self._expire()
            return key in self._items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._gone.clear()

    def count(self, kind: str) -> int:
        with self._lock:
            return sum(k == kind for k, _ in self._items)

    def _held_bytes(self) -> int:
        return sum(h.nbytes for h in self._items.values())

    def _expire(self) -> None:
        now = time.monotonic()
        stale = [k for k, h in self._items.items() if not h.pins and now - h.last_used > self.ttl_s]
        for key in stale:
            del self._items[key]
            self._remember(key, f"it was unused for more than {self.ttl_s / 60:.0f} min (serve --study-ttl-min)")

    def _make_room(self, nbytes: int, what: str) -> None:
        free = self.limit_bytes - self._held_bytes()
        if free >= nbytes:
            return
        evictable = [(k, h) for k, h in self._items.items() if not h.pins]  # least recently used first
        if free + sum(h.nbytes for _, h in evictable) < nbytes:
            pinned = sum(h.nbytes for h in self._items.values() if h.pins)
            raise Refusal(503, "service busy",
                          f"{what} needs {_mib(nbytes)} MiB, but {_mib(pinned)} MiB of the service's "
                          f"{_mib(self.limit_bytes)} MiB are held for queued and running jobs; try again when "
                          "they finish (or start the service with a larger --study-cache-mb)", RETRY_AFTER_S)
        for key, held in evictable:
            if free >= nbytes:
                break
            del self._items[key]
            free += held.nbytes
            self._remember(key, f"it was dropped to keep the service within its memory cap of "
                                f"{_mib(self.limit_bytes)} MiB (serve --study-cache-mb); newer work took its place")

    def _remember(self, key: Key, reason: str) -> None:
        self._gone[key] = reason
        self._gone.move_to_end(key)
        while len(self._gone) > self.remember_gone:
            self._gone.popitem(last=False)


def _mib(nbytes: int) -> str:
    return f"{nbytes / (1 << 20):.0f}" if nbytes >= 10 << 20 else f"{nbytes / (1 << 20):.1f}"
