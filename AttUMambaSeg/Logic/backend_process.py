"""A backend the module starts and stops itself: ``<python> -m attumamba.cli serve`` on a free loopback port.

The backend runs in its own Python environment (torch never enters Slicer). Each start gets a
private folder for its token and its log: the token is never the user's
``~/.attumamba/token``, which a backend they started by hand may be using. Output goes to the
log file, not a pipe, so a chatty backend can never stall on a full pipe, and the last lines
of the log explain a backend that exited. Slicer's launcher points PYTHONHOME/PYTHONPATH at
Slicer's own Python; those are removed so the backend's interpreter finds its own library.
Starting never waits: :meth:`ManagedBackend.state` says when it is ready.

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
import tempfile
import urllib.error
from collections.abc import Mapping
from pathlib import Path

from .client import BackendClient, BackendError
from .transport import direct_opener, is_loopback_url

LOOPBACK = "127.0.0.1"
INSTANCE_VARIABLE = "ATTUMAMBA_INSTANCE_ID"
DEFAULT_TOKEN_FILE = Path("~/.attumamba/token")
#: Variables Slicer's launcher sets for its own Python; another interpreter must not see them.
SLICER_PYTHON_VARIABLES = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONNOUSERSITE", "PYTHONEXECUTABLE")
PYTHON_HINT = ("choose the Python of the backend's environment, e.g. <AttUMambaSeg repository>/.venv/bin/python "
               "(made by 'make demo'), or that environment's folder")


def serve_command(python: str | Path, port: int, token_file: str | Path, *, host: str = LOOPBACK,
                  device: str = "auto") -> list[str]:
    """The command line that starts the backend's HTTP service."""
    return [str(python), "-m", "attumamba.cli", "serve", "--host", host, "--port", str(int(port)),
            "--token-file", str(token_file), "--device", device]


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
    """The backend's interpreter: a Python executable, or an environment folder holding one."""
    if python is None or not str(python).strip():
        raise ValueError(f"no backend Python is set; {PYTHON_HINT}")
    path = Path(str(python).strip()).expanduser()
    if path.is_dir():
        for candidate in (path / "bin" / "python", path / "Scripts" / "python.exe", path / "python.exe"):
            if candidate.is_file():
                return candidate
        raise ValueError(f"{path} is a folder without bin/python; {PYTHON_HINT}")
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

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def token_file(self) -> Path:
        return self._folder() / "token"

    @property
    def log_file(self) -> Path:
        return self._folder() / "backend.log"

    def command(self) -> list[str]:
        return serve_command(self.python, self.port, self.token_file, host=self.host, device=self.device)

    def start(self) -> None:
        """Start the process and return at once (nothing happens if it already runs)."""
        if self.process is not None and self.process.poll() is None:
            return
        self.instance_id, self.foreign = secrets.token_hex(16), False
        environment = {**self.environment, INSTANCE_VARIABLE: self.instance_id}
        with open(self.log_file, "wb") as log:
            self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, env=environment, cwd=str(self._folder()))

    def state(self) -> str:
        """``stopped``, ``starting`` (not answering yet), ``running``, ``foreign`` (another program answers
        on the port) or ``exited``; waits at most a second for the health answer."""
        if self.process is None:
            return "stopped"
        if self.process.poll() is not None:
            return "exited"
        if not self.token_file.is_file():
            return "starting"
        instance = health_instance(self.url)
        if instance is None:
            return "starting"
        self.foreign = instance != self.instance_id
        return "foreign" if self.foreign else "running"

    def failure(self) -> str:
        """Why the backend is not running: another program on its port, or its exit with the end of its log."""
        if self.foreign and self.process is not None and self.process.poll() is None:
            return (f"another program answers on {self.host}:{self.port}, not the backend this module started "
                    "(its /v1/health does not name this start's instance); the token was not sent to it. "
                    "Stop and start the backend again (it gets a new free port).")
        code = self.process.returncode if self.process is not None else None
        tail = self.log_tail()
        return f"the backend exited with code {code}" + (f":\n{tail}" if tail else " without output")

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

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the process (terminate, then kill after ``timeout_s``) and remove its folder."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout_s)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def _folder(self) -> Path:
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="attumamba-backend-"))  # mode 0700: only this user
        return self.folder
