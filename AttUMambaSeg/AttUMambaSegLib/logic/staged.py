"""Work in stages stepped from the GUI's timer: what runs, assessments, re-measuring and opening a study share.

:meth:`StagedWork.step` never waits: network and disk work go to one daemon worker thread, files
to and from the backend to a helper process (:meth:`_transfer`, see :mod:`.transfers`: in Slicer
a thread would crawl while the GUI holds the GIL), and a step only looks whether the piece
finished, then starts the next one (:meth:`_start_work`) or takes its result (:meth:`_finished_work`);
a transfer's progress moves the stage's share of the progress bar. MRML is touched only in
``step`` (the caller's thread).
Subclasses name their stages in ``STAGE_START`` (overall progress at the start of each), set
``self.stage`` to the first one, and say how to cancel on the backend (:meth:`_cancel_backend`).
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import Future
from pathlib import Path

from .transfers import Transfer
from .workers import SerialWorker

FINAL_STATES = ("done", "failed", "cancelled")


class RunCancelled(RuntimeError):
    """The work was cancelled (by the user, or because :meth:`StagedWork.wait` timed out)."""


class StagedWork:
    STAGE_START: dict[str, float] = {}
    WHAT = "the work"                   # for messages: "the run", "the assessment"
    CANCELLED = "cancelled"             # the message a cancel leaves

    def __init__(self, first_stage: str, message: str, on_progress=None, worker_name: str = "attumamba-work"):
        self.state, self.stage, self.progress, self.message = "running", first_stage, 0.0, message
        self.on_progress = on_progress
        self.error: Exception | None = None
        self.result = None
        self._pending: Future | Transfer | None = None
        self._transfer_message, self._shown_fraction = "", 0.0  # of the transfer in flight
        self._folder: Path | None = None    # removed when the work ends
        self._worker = SerialWorker(worker_name)  # daemon: quitting never waits for it

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    def step(self) -> bool:
        """Advance if the current piece of work is done; True while the work goes on."""
        if self.finished:
            return False
        try:
            if self._pending is not None:
                done = self._pending.done()
                self._transfer_progress()
                if not done:
                    return True
                future, self._pending = self._pending, None
                self._finished_work(future)
            else:
                self._start_work()
        except Exception as error:  # noqa: BLE001 - any failure ends the work with its message; no nodes made
            self._finish("failed", str(error) or type(error).__name__, error)
        return not self.finished

    def wait(self, timeout_s: float = 3600.0, poll_s: float = 0.05):
        """Run to the end in this thread (scripts, tests): the result, or the error that stopped it."""
        deadline = time.monotonic() + timeout_s
        while self.step():
            if time.monotonic() > deadline:
                self.cancel()
                raise RunCancelled(f"{self.WHAT} did not finish within {timeout_s:.0f} s and was cancelled")
            time.sleep(poll_s)
        if self.state == "cancelled":
            raise RunCancelled(self.message)
        if self.state == "failed":
            raise self.error
        return self.result

    def cancel(self) -> None:
        """Stop now: the backend's part is cancelled in the background; no node changes."""
        if self.finished:
            return
        pending = self._pending
        if isinstance(pending, Transfer):  # files on the way: the helper ends now, its files go after it
            pending.cancel()
            self._worker.submit(pending.wait_ended)
            pending = None
        self._worker.submit(self._cancel_backend, pending)
        self._finish("cancelled", self.CANCELLED)

    # --- for subclasses ---------------------------------------------------------------------------
    def _start_work(self) -> None:
        raise NotImplementedError

    def _finished_work(self, future: Future) -> None:
        raise NotImplementedError

    def _cancel_backend(self, pending: Future | None) -> None:
        """Runs on the worker after a cancel; ``pending`` is the piece of work in flight then."""

    def _run(self, function, *args) -> None:
        self._pending = self._worker.submit(function, *args)

    def _transfer(self, *calls: tuple) -> None:
        """Calls of ``self.client`` that move files, ``(name, *arguments)`` each, made by a helper process."""
        self._pending = Transfer(self.client, *calls)
        self._transfer_message, self._shown_fraction = self.message, 0.0

    def _transfer_progress(self) -> None:
        """A transfer's progress as its share of the stage, and its percentage after the stage's message."""
        fraction = self._pending.progress if isinstance(self._pending, Transfer) else 0.0
        if fraction > self._shown_fraction and self.stage in self.STAGE_START:
            self._shown_fraction = fraction
            start = self.STAGE_START[self.stage]
            end = min([value for value in self.STAGE_START.values() if value > start], default=1.0)
            self._say(start + (end - start) * fraction, f"{self._transfer_message} ({100 * fraction:.0f}%)")

    def _enter(self, stage: str, message: str) -> None:
        self.stage = stage
        self._say(self.STAGE_START[stage], message)

    def _say(self, progress: float, message: str) -> None:
        self.progress, self.message = max(self.progress, progress), message
        if self.on_progress is not None:
            self.on_progress(self.stage, self.progress, message)

    def _finish(self, state: str, message: str, error: Exception | None = None) -> None:
        self.state, self.stage, self.error = state, state, error
        if state == "done":
            self.progress = 1.0
        in_flight, self._pending = self._pending, None
        self._close(files_in_use=in_flight is not None)
        self._say(self.progress, message)

    def _close(self, files_in_use: bool = False) -> None:
        """Remove the folder: now when nothing works in it any more (so it is gone when ``step`` says the
        work ended), else after the piece in flight (a cancel: the worker's call or the killed helper)."""
        if self._folder is not None:
            if files_in_use:
                self._worker.submit(shutil.rmtree, self._folder, True)  # after the work queued before it
            else:
                shutil.rmtree(self._folder, ignore_errors=True)
        self._worker.shutdown(wait=False)
