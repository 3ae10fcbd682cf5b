"""Bulk transfers (volumes up; labelmaps, volumes and transforms down) in a helper process, polled from the GUI timer.

In Slicer, PythonQt keeps the GIL while the main thread idles in Qt's event loop, so a Python
thread of Slicer's process moves only while the GUI timer runs Python: a 48 MiB upload on
loopback took ten times as long as it should, a download fifteen. A :class:`Transfer` therefore
makes its :class:`~.client.BackendClient` calls in a Python of its own
(:mod:`.transfer_process`, run by this interpreter's executable: PythonSlicer in Slicer). Slicer's
side only starts it, reads the events it appends to a file when polled (:meth:`Transfer.done`:
progress, then the results or the error) and kills it on cancel. No thread moves the data,
nothing here waits, and a pipe that could fill up is never read.

The consent to plain HTTP is checked here, before anything starts; the token goes to the helper
on its stdin, never on its command line or in its environment. The helper ends as soon as its
stdin closes, so cancelling, quitting or a crash of Slicer ends every transfer at once. On
Windows it starts without a console window, as the managed backend does.
"""

from __future__ import annotations

import builtins
import json
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable
from concurrent.futures import CancelledError
from pathlib import Path

from .backend_process import hidden_console_options
from .client import BackendClient, BackendError
from .transfer_process import CALLS
from .workers import in_background

#: The folder that holds ``AttUMambaSegLib``: put on the helper's ``sys.path`` to import the helper.
MODULE_FOLDER = Path(__file__).resolve().parents[2]
HELPER_MODULE = f"{__package__}.transfer_process"
BOOTSTRAP = "import runpy, sys; sys.path.insert(0, sys.argv[1]); runpy.run_module(sys.argv[2], run_name='__main__')"


def helper_python() -> str:
    """The Python that runs the helper: this interpreter's (in Slicer ``sys.executable`` is PythonSlicer)."""
    python = sys.executable or shutil.which("PythonSlicer") or ""
    if not python:
        raise BackendError("no Python executable to run the transfer helper: sys.executable is empty and "
                           "PythonSlicer is not on PATH; reinstall Slicer")
    return python


def helper_command(python: str, events_file: Path) -> list[str]:
    """The helper's command line: no secret in it (the job comes on stdin)."""
    return [python, "-c", BOOTSTRAP, str(MODULE_FOLDER), HELPER_MODULE, str(events_file)]


class Transfer:
    """``calls`` of ``client``, each ``(method name, *arguments)``, made in order by a helper process.

    Used like a :class:`concurrent.futures.Future` polled from a timer: :meth:`done` (which reads
    the helper's events and never waits), :meth:`result` (the last call's), :meth:`exception`,
    :meth:`cancel`. ``progress`` (0..1 over all calls) follows the bytes moved; ``on_progress``,
    if given, is called with it from :meth:`done`. Errors come back as the client raises them:
    a :class:`BackendError` with the same message and status.
    """

    def __init__(self, client: BackendClient, *calls: tuple, on_progress: Callable[[float], None] | None = None):
        self.calls = [(name, [str(a) if isinstance(a, Path) else a for a in args]) for name, *args in calls]
        unknown = [name for name, _ in self.calls if name not in CALLS]
        if unknown or not self.calls:
            raise ValueError(f"not transfer calls: {unknown or 'none given'} (allowed: {', '.join(sorted(CALLS))})")
        client.require_private_channel()  # the helper takes the user's consent as given: check it here
        python = helper_python()
        self.progress, self.on_progress = 0.0, on_progress
        self._outcome: tuple[str, object] | None = None  # ("results", list), ("error", Exception), ("cancelled", None)
        self._final: tuple[str, object] | None = None    # the helper's last line, read before it ended
        self._unread = b""
        self._folder = Path(tempfile.mkdtemp(prefix="attumamba-transfer-"))  # only this user can read it
        self._remove_folder = weakref.finalize(self, shutil.rmtree, self._folder, True)  # also if dropped unfinished
        (self._folder / "events.jsonl").touch()
        self._events = (self._folder / "events.jsonl").open("rb")
        self.process = self._start(python)
        job = {"url": client.url, "token": client.token, "ca_file": client.ca_file, "timeout": client.timeout,
               "calls": self.calls}
        try:
            self.process.stdin.write(json.dumps(job).encode() + b"\n")  # the token: on stdin only
            self.process.stdin.flush()
        except OSError:
            pass  # it ended already; done() says why

    def _start(self, python: str) -> subprocess.Popen:
        try:
            with (self._folder / "stderr.txt").open("wb") as errors:
                return subprocess.Popen(helper_command(python, self._folder / "events.jsonl"), stdin=subprocess.PIPE,
                                        stdout=subprocess.DEVNULL, stderr=errors, cwd=str(self._folder),
                                        **hidden_console_options())
        except OSError as error:
            self._remove_files()
            raise BackendError(f"cannot start the transfer helper {python} ({error.strerror or error}); "
                               "check that Slicer's Python (PythonSlicer) is installed") from None

    # --- Future-like -------------------------------------------------------------------------------
    def done(self) -> bool:
        """Whether the helper finished (or was cancelled); reads its progress meanwhile. Never waits."""
        if self._outcome is None:
            ended = self.process.poll() is not None  # before reading: all it wrote is in the file then
            self._read_events()
            if ended:
                self._outcome = self._final or ("error", self._crash())
                self._close()
                self._remove_files()
        return self._outcome is not None

    def result(self):
        """The last call's result (a download's target path as a string); raises the transfer's error."""
        error = self.exception()
        if error is not None:
            raise error
        return self._outcome[1][-1]

    def exception(self) -> BaseException | None:
        if not self.done():
            raise RuntimeError("the transfer is still running; call result() once done() is True")
        if self._outcome[0] == "cancelled":
            raise CancelledError()
        return self._outcome[1] if self._outcome[0] == "error" else None

    def cancelled(self) -> bool:
        return self._outcome is not None and self._outcome[0] == "cancelled"

    def cancel(self) -> bool:
        """End the helper now (its stdin closed and the process killed); False if it had finished."""
        if self.done():
            return False
        self._outcome = ("cancelled", None)
        self._close()
        self.process.kill()
        in_background(self._remove_when_ended)
        return True

    def wait(self, timeout_s: float = 3600.0, poll_s: float = 0.05):
        """Poll until done (scripts, tests): the result, or the error; cancels after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not self.done():
            if time.monotonic() > deadline:
                self.cancel()
                raise BackendError(f"the transfer did not finish within {timeout_s:.0f} s and was cancelled")
            time.sleep(poll_s)
        return self.result()

    def wait_ended(self, timeout_s: float = 5.0) -> bool:
        """Whether the helper's process is gone, waiting up to ``timeout_s`` (worker threads only)."""
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    # --- the helper's events -------------------------------------------------------------------------
    def _read_events(self) -> None:
        """Progress from the lines appended since the last look, and the final line once it is there."""
        self._unread += self._events.read()
        *lines, self._unread = self._unread.split(b"\n")
        for line in lines:
            event = json.loads(line)
            if "results" in event:
                self._final = ("results", event["results"])
                self._advance(1.0)
            elif "error" in event:
                self._final = ("error", _rebuilt_error(event))
            else:
                fraction = min(event["done"] / event["total"], 1.0) if event["total"] else 0.0
                self._advance((event["call"] + fraction) / len(self.calls))

    def _advance(self, progress: float) -> None:
        if progress > self.progress:
            self.progress = progress
            if self.on_progress is not None:
                self.on_progress(progress)

    def _crash(self) -> BackendError:
        try:
            tail = (self._folder / "stderr.txt").read_text(errors="replace").strip().splitlines()[-5:]
        except OSError:
            tail = []
        detail = ":\n" + "\n".join(tail) if tail else " without a message"
        return BackendError(f"the transfer helper ended with code {self.process.returncode} before it finished"
                            + detail)

    def _close(self) -> None:
        for stream in (self.process.stdin, self._events):
            try:
                stream.close()
            except OSError:
                pass  # the helper is gone already: nothing left to tell it

    def _remove_when_ended(self) -> None:
        self.wait_ended(30.0)
        self._remove_files()

    def _remove_files(self) -> None:
        self._events.close()
        self._remove_folder()


def _rebuilt_error(event: dict) -> Exception:
    """The helper's error as the client would have raised it here: a BackendError, or a built-in exception."""
    if event.get("type") == "BackendError":
        return BackendError(event["error"], event.get("status"))
    kind = getattr(builtins, str(event.get("type")), None)
    if isinstance(kind, type) and issubclass(kind, Exception):
        try:
            return kind(event["error"])
        except TypeError:  # a built-in exception that wants other arguments
            pass
    return RuntimeError(event["error"])
