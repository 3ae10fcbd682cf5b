"""Work off the GUI thread on daemon threads, so that quitting Slicer never waits for the network.

``concurrent.futures.ThreadPoolExecutor`` threads are joined when the interpreter exits: a
request in flight (an upload can take up to its 600 s timeout) would hold Slicer's quit. The
threads here are daemon threads: at exit, whatever they still do is abandoned at once. Their
results come back as ordinary :class:`~concurrent.futures.Future` objects that the GUI timer
polls with ``done()``.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future


def _run_into(future: Future, function, args, kwargs) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = function(*args, **kwargs)
    except BaseException as error:  # noqa: BLE001 - handed to whoever reads the future
        future.set_exception(error)
    else:
        future.set_result(result)


def in_background(function, *args, **kwargs) -> Future:
    """Run one call on its own daemon thread; the caller polls ``done()`` and reads ``result()``."""
    future: Future = Future()
    threading.Thread(target=_run_into, args=(future, function, args, kwargs), name="attumamba-call",
                     daemon=True).start()
    return future


class SerialWorker:
    """Calls run one after another, in the order submitted, on one daemon thread (started on first use)."""

    def __init__(self, name: str = "attumamba-worker"):
        self.name = name
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()

    def submit(self, function, *args, **kwargs) -> Future:
        """Queue a call; a worker that was shut down refuses with :class:`RuntimeError`."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("this worker was shut down; no more calls are taken")
            self._calls.put((future, function, args, kwargs))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
        return future

    def shutdown(self, wait: bool = False) -> None:
        """Take no more calls; those queued still run. Never waits unless ``wait`` (scripts, tests)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._calls.put(None)
            thread = self._thread
        if wait and thread is not None:
            thread.join()

    def _loop(self) -> None:
        while (call := self._calls.get()) is not None:
            _run_into(*call)
