"""A backend the module starts and stops itself: ``<python> -m attumamba.cli serve`` on a free loopback port.

The backend runs in its own Python environment (torch never enters Slicer). Each start gets a
private folder for its token and its log: the token is never the user's
``~/.attumamba/token``, which a backend they started by hand may be using. Output goes to the
log file, not a pipe, so a chatty backend can never stall on a full pipe, and the last lines
of the log explain a backend that exited. Slicer's launcher points PYTHONHOME/PYTHONPATH at
Slicer's own Python; those are removed so the backend's interpreter finds its own library.
Nothing here waits on the GUI thread: starting returns at once and :meth:`ManagedBackend.state`
says when it is ready (its health check runs on a daemon thread); stopping terminates the
process and :meth:`ManagedBackend.ended` (polled) kills it if it lingers. The log is kept after
the backend ended (only the token is removed), so a failed start can be read.

On Windows the backend starts without a console window (as ``slicer.util.launchConsoleProcess``
starts processes: hidden ``STARTUPINFO``; and ``CREATE_NO_WINDOW``, so there is no console a
user could close). It is given Slicer's process id (``serve --parent-pid``) and exits by
itself when Slicer is gone, also after a crash.

Each start draws a fresh random instance id, handed to the backend in its environment
(``ATTUMAMBA_INSTANCE_ID``; a command line is readable by every user of the computer). The
backend is "running" only when its token file exists and ``GET /v1/health`` on its port (no
token needed) names that id: another program holding the port never receives the token.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
from collections.abc import Mapping
from pathlib import Path

from .client import BackendClient, BackendError
from .transport import direct_opener, is_loopback_url
from .workers import in_background

LOOPBACK = "127.0.0.1"
INSTANCE_VARIABLE = "ATTUMAMBA_INSTANCE_ID"
DEFAULT_TOKEN_FILE = Path("~/.attumamba/token")
#: Variables Slicer's launcher sets for its own Python; another interpreter must not see them.
SLICER_PYTHON_VARIABLES = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONNOUSERSITE", "PYTHONEXECUTABLE")
PYTHON_HINT = ("choose the Python of the backend's environment, e.g. <AttUMambaSeg repository>/.venv/bin/python "
               "(.venv\\Scripts\\python.exe on Windows; made by 'python Backend/install.py' or 'make demo'), that "
               "environment's folder, or the repository's folder")
#: Where an interpreter sits under a folder the user chose: an environment's, or the repository's.
PYTHON_CANDIDATES = ("bin/python", "Scripts/python.exe", "python.exe", ".venv/bin/python", ".venv/Scripts/python.exe")
#: Windows constants (named as in :mod:`subprocess`, which defines them only on Windows).
STARTF_USESHOWWINDOW, SW_HIDE, CREATE_NO_WINDOW = 0x1, 0, 0x08000000
STOP_GRACE_S = 5.0  # after terminate(), how long the backend may take before it is killed


def serve_command(python: str | Path, port: int, token_file: str | Path, *, host: str = LOOPBACK,
                  device: str = "auto", parent_pid: int | None = None) -> list[str]:
    """The command line that starts the backend's HTTP service (ending itself when ``parent_pid`` ends)."""
    command = [str(python), "-m", "attumamba.cli", "serve", "--host", host, "--port", str(int(port)),
               "--token-file", str(token_file), "--device", device]
    return command + (["--parent-pid", str(int(parent_pid))] if parent_pid else [])


def hidden_console_options() -> dict:
    """``Popen`` arguments that start a console program without a window on Windows ({} elsewhere)."""
    if sys.platform != "win32":
        return {}
    startup = subprocess.STARTUPINFO()
    startup.dwFlags |= STARTF_USESHOWWINDOW
    startup.wShowWindow = SW_HIDE
    return {"startupinfo": startup, "creationflags": CREATE_NO_WINDOW}


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on now (the system's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def health_instance(url: str, timeout_s: float = 1.0) -> str | None:
    """The instance id ``GET /v1/health`` at ``url`` names, without a token: None while nothing answers
    (yet), '' when something answers that names no instance (another program, an older backend)."""
    try:
        with direct_opener().open(url + "/v1/health", timeout=timeout_s) as response:
            health = json.loads(response.read())
    except urllib.error.HTTPError:  # an error page: not this backend's health
        return ""
    except (urllib.error.URLError, OSError):  # refused, reset or timed out: not listening yet
        return None
    except (http.client.HTTPException, ValueError):  # not HTTP, or not JSON
        return ""
    return str(health.get("instance") or "") if isinstance(health, dict) else ""


def read_token(token_file: str | Path) -> str:
    """The token a backend wrote, or a :class:`BackendError` that says what to do."""
    path = Path(token_file).expanduser()
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise BackendError(f"there is no backend token at {path}; start the backend first "
                           "(it writes the token there) or paste the token") from None
    except OSError as error:
        raise BackendError(f"cannot read the backend token at {path} ({error.strerror})") from None
    if not token:
        raise BackendError(f"the backend token file {path} is empty; restart the backend")
    return token


def token_for(url: str, token: str = "", token_file: str | Path = DEFAULT_TOKEN_FILE) -> str:
    """The pasted token; without one, for a backend on this machine, the token ``serve`` wrote by default."""
    if token.strip():
        return token.strip()
    if is_loopback_url(url) and Path(token_file).expanduser().is_file():
        return read_token(token_file)
    return ""


def check_python(python: str | Path | None) -> Path:
    """The backend's interpreter: a Python executable, an environment folder holding one, or the
    repository folder holding ``.venv``. Links are kept as they are: a venv's python is a link to
    the base interpreter, and only through the link does it find the environment."""
    if python is None or not str(python).strip():
        raise ValueError(f"no backend Python is set; {PYTHON_HINT}")
    path = Path(str(python).strip()).expanduser()
    if path.is_dir():
        for candidate in PYTHON_CANDIDATES:
            if (path / candidate).is_file():
                return path / candidate
        raise ValueError(f"{path} is a folder without bin/python, Scripts\\python.exe or .venv; {PYTHON_HINT}")
    if not path.is_file() or not os.access(path, os.X_OK):
        raise ValueError(f"{path} is not an executable file; {PYTHON_HINT}")
    return path


def backend_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for the backend: ``base`` (default: this process's) without Slicer's Python settings."""
    environment = {k: v for k, v in (os.environ if base is None else base).items() if k not in SLICER_PYTHON_VARIABLES}
    environment["PYTHONUNBUFFERED"] = "1"  # the log shows what happened up to a crash
    return environment


class ManagedBackend:
    """One backend process: :meth:`start`, poll :meth:`state`, then :meth:`client`; :meth:`stop` ends it."""

    def __init__(self, python: str | Path, *, device: str = "auto", host: str = LOOPBACK, port: int | None = None,
                 env: Mapping[str, str] | None = None):
        self.python = check_python(python)
        self.device, self.host = device, host
        self.port = port or free_port(host)
        self.environment = backend_environment(env)
        self.folder: Path | None = None
        self.process: subprocess.Popen | None = None
        self.instance_id = ""  # drawn afresh by each start()
        self.foreign = False  # another program answered on the port
        self._confirmed = False  # its health named this start's instance
        self._probe = None  # Future of the health check in flight
        self._ending: subprocess.Popen | None = None  # terminated by stop(), not yet seen gone
        self._kill_at = 0.0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def alive(self) -> bool:
        """Whether the process of the current start still runs (not yet exited, not stopped)."""
        return self.process is not None and self.process.poll() is None

    @property
    def token_file(self) -> Path:
        return self._folder() / "token"

    @property
    def log_file(self) -> Path:
        return self._folder() / "backend.log"

    def command(self) -> list[str]:
        return serve_command(self.python, self.port, self.token_file, host=self.host, device=self.device,
                             parent_pid=os.getpid())

    def start(self) -> None:
        """Start the process and return at once (nothing happens if it already runs)."""
        if self.process is not None and self.process.poll() is None:
            return
        self.folder = None  # a fresh folder: the last start's log stays where it was
        self.instance_id, self.foreign, self._confirmed, self._probe = secrets.token_hex(16), False, False, None
        environment = {**self.environment, INSTANCE_VARIABLE: self.instance_id}
        with open(self.log_file, "wb") as log:
            self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, env=environment, cwd=str(self._folder()),
                                            **hidden_console_options())

    def state(self) -> str:
        """``stopped``, ``starting`` (not answering yet), ``running``, ``foreign`` (another program answers
        on the port) or ``exited``; never waits: the health check runs in the background and a later
        call reads its answer."""
        if self.process is None:
            return "stopped"
        if self.process.poll() is not None:
            return "exited"
        if self._confirmed:
            return "running"
        if not self.token_file.is_file():
            return "starting"
        if self._probe is not None and self._probe.done():
            instance, self._probe = self._probe.result(), None
            if instance is not None:
                self.foreign = instance != self.instance_id
                self._confirmed = not self.foreign
        if self._confirmed:
            return "running"
        if self._probe is None:
            self._probe = in_background(health_instance, self.url)
        return "foreign" if self.foreign else "starting"

    def failure(self) -> str:
        """Why the backend is not running: another program on its port, or its exit with the end of its log."""
        if self.foreign and self.process is not None and self.process.poll() is None:
            return (f"another program answers on {self.host}:{self.port}, not the backend this module started "
                    "(its /v1/health does not name this start's instance); the token was not sent to it. "
                    "Stop and start the backend again (it gets a new free port).")
        code = self.process.returncode if self.process is not None else None
        tail = self.log_tail()
        where = f" (its log: {self.log_file})" if self.folder is not None else ""
        return f"the backend exited with code {code}{where}" + (f":\n{tail}" if tail else " without output")

    def log_tail(self, lines: int = 12) -> str:
        if self.folder is None:
            return ""
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def client(self, timeout: float = 30.0) -> BackendClient:
        """A client with the token, once the backend on the port has shown it is this start's."""
        state = self.state()
        if state != "running":
            raise BackendError(self.failure() if state in ("foreign", "exited") else
                               f"the backend on {self.url} is {state}, not running; the token was not sent")
        return BackendClient(self.url, read_token(self.token_file), timeout)

    def stop(self, wait_s: float = 0.0) -> None:
        """Terminate the process and remove its token; the log stays. Returns at once unless ``wait_s``
        (scripts, tests): the GUI polls :meth:`ended`, which kills a backend that lingers."""
        process, self.process, self._confirmed = self.process, None, False
        if process is not None and process.poll() is None:
            process.terminate()
            self._ending, self._kill_at = process, time.monotonic() + STOP_GRACE_S
        if self.folder is not None:
            self.token_file.unlink(missing_ok=True)
        deadline = time.monotonic() + wait_s
        while not self.ended() and time.monotonic() < deadline:
            time.sleep(0.05)

    def ended(self) -> bool:
        """Whether the process :meth:`stop` terminated is gone; kills it once its grace time is over."""
        if self._ending is None or self._ending.poll() is not None:
            self._ending = None
            return True
        if time.monotonic() >= self._kill_at:
            self._ending.kill()
        return False

    def remove_files(self) -> None:
        """Remove the start's folder, log included (nothing else refers to it)."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def _folder(self) -> Path:
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="attumamba-backend-"))  # mode 0700: only this user
        return self.folder
