"""``serve --parent-pid``: the backend ends itself once the program that started it is gone.

The Slicer module starts a backend of its own; if Slicer crashes (or is killed) nothing would
stop that backend, which would hold its port, its memory and maybe the GPU. A daemon thread
checks every second whether the parent still runs and otherwise ends the process at once.

How "still runs" is checked: on Windows a handle to the parent is opened once, so a new process
that reuses the number is never mistaken for it; on POSIX, when the parent is the direct parent,
``os.getppid()`` changes the moment it dies (the backend is handed to init), else a signal-0
probe tells whether the number is still in use.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

EXIT_CODE = 3  # told apart from a crash (1) and a refused start (2) in the module's log
_SYNCHRONIZE, _QUERY_LIMITED, _WAIT_OBJECT_0 = 0x00100000, 0x1000, 0


def parent_check(pid: int) -> Callable[[], bool]:
    """A function that says whether process ``pid`` still runs (checked from now on)."""
    if os.name == "nt":
        return _windows_check(pid)
    if pid == os.getppid():
        return lambda: os.getppid() == pid
    return lambda: _posix_exists(pid)


def _posix_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # runs, under another user
        return True
    return True


def _windows_check(pid: int) -> Callable[[], bool]:
    import ctypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    handle = kernel32.OpenProcess(_SYNCHRONIZE | _QUERY_LIMITED, False, int(pid))
    if not handle:
        return lambda: False  # gone already (or never ours to watch)
    return lambda: kernel32.WaitForSingleObject(handle, 0) != _WAIT_OBJECT_0


def _exit_now(pid: int) -> None:
    print(f"AttUMambaSeg backend: the program that started it (process {pid}) is gone; exiting", flush=True)
    os._exit(EXIT_CODE)  # no clean-up that could hang: nobody is left to answer


def watch_parent(pid: int, on_gone: Callable[[int], None] = _exit_now, interval_s: float = 1.0) -> threading.Thread:
    """Start the daemon thread that calls ``on_gone(pid)`` once process ``pid`` no longer runs."""
    alive = parent_check(pid)

    def watch() -> None:
        while alive():
            time.sleep(interval_s)
        on_gone(pid)

    thread = threading.Thread(target=watch, name="attumamba-parent-watch", daemon=True)
    thread.start()
    return thread
