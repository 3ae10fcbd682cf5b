"""The transfer helper process: a few :class:`~.client.BackendClient` calls that move files, run
outside Slicer's process, where the GUI thread's hold on the GIL cannot slow them down.

Started by :mod:`.transfers` with the standard library only (it imports ``client``, ``forms`` and
``transport``, nothing of MRML, numpy or Qt). Its job comes as one JSON line on stdin:
``{"url", "token", "ca_file", "timeout", "calls": [[name, [args...]], ...]}`` (the token is never
on the command line, which every user of the computer can read). The calls run in order with
the same client as in Slicer (no proxy, no redirect, verified TLS). What happens is appended as
JSON lines to the events file named on the command line: ``{"call", "done", "total"}`` as
bytes move (at most one line per percent), then ``{"results": [...]}`` or
``{"error", "status", "type"}``. It ends when its stdin ends: the parent cancelled, quit or crashed.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

from . import transport
from .client import BackendClient, BackendError

#: The client's calls a transfer may make: those that send or fetch files, and the report after a job.
CALLS = frozenset({"upload_study", "measure", "send_labelmap", "download_labelmap", "download_volume",
                   "download_batch_labelmap", "download_response_transform", "export_dicom", "lesions"})


class EventLog:
    """The events file, one JSON object per line, each written whole and flushed."""

    def __init__(self, path: Path):
        self._file = path.open("a", encoding="utf-8")
        self._step = -1

    def write(self, event: dict) -> None:
        self._file.write(json.dumps(event, default=str) + "\n")
        self._file.flush()

    def progress(self, call: int, done: int, total: int) -> None:
        step = int(100 * done / total) if total else done >> 22  # each percent, or each 4 MiB of unknown size
        if step != self._step:
            self._step = step
            self.write({"call": call, "done": done, "total": total})

    def next_call(self) -> None:
        self._step = -1


def run_calls(job: dict, events: EventLog) -> list:
    """Each call of the job in order; the results (a file's path for a download)."""
    client = BackendClient(job["url"], job["token"], float(job["timeout"]), job.get("ca_file") or "")
    transport.CONSENT.confirm(client.url)  # the parent started this transfer only after the user's consent
    results = []
    for index, (name, args) in enumerate(job["calls"]):
        if name not in CALLS:
            raise ValueError(f"'{name}' is not a transfer call")
        events.next_call()
        client.on_transfer_progress = lambda done, total, index=index: events.progress(index, done, total)
        results.append(getattr(client, name)(*args))
    return results


def end_with_parent(stdin) -> None:
    """Exit at once when stdin ends: the parent closed it to cancel, or quit, or crashed."""
    while stdin.read(1 << 16):
        pass
    os._exit(3)


def main(events_file: str) -> None:
    events = EventLog(Path(events_file))
    try:
        job = json.loads(sys.stdin.buffer.readline())
        threading.Thread(target=end_with_parent, args=(sys.stdin.buffer,), daemon=True).start()
        events.write({"results": run_calls(job, events)})
    except BackendError as error:
        events.write({"error": str(error), "status": error.status, "type": "BackendError"})
    except Exception as error:  # noqa: BLE001 - sent to the parent, which raises it there
        events.write({"error": str(error) or type(error).__name__, "status": None, "type": type(error).__name__})
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[-1])
