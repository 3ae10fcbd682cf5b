"""A backend the module starts itself: command line, token, interpreter checks, and a real start and stop."""

from __future__ import annotations

import importlib
import json
import os
import socket
import stat
import sys
import time

import pytest


def _process():
    return importlib.import_module("AttUMambaSegLib.logic.backend_process")


def test_serve_command(logic, tmp_path):
    command = _process().serve_command("/env/bin/python", 8123, tmp_path / "token")
    assert command == ["/env/bin/python", "-m", "attumamba.cli", "serve", "--host", "127.0.0.1", "--port", "8123",
                       "--token-file", str(tmp_path / "token"), "--device", "auto"]
    assert "--device" in _process().serve_command("python", 1, "t", device="cuda")
    assert _process().serve_command("python", 1, "t", parent_pid=4321)[-2:] == ["--parent-pid", "4321"]


def test_free_port_is_free(logic):
    port = _process().free_port()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # would raise if taken


def test_read_token(logic, tmp_path):
    client = importlib.import_module("AttUMambaSegLib.logic.client")
    (tmp_path / "token").write_text("  secret\n")
    assert _process().read_token(tmp_path / "token") == "secret"
    with pytest.raises(client.BackendError, match="no backend token at .*start the backend"):
        _process().read_token(tmp_path / "missing")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(client.BackendError, match="is empty"):
        _process().read_token(tmp_path / "empty")


def test_token_for(logic, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    token_for = _process().token_for
    assert token_for("http://127.0.0.1:8765", " pasted ", token_file) == "pasted"
    assert token_for("http://127.0.0.1:8765", "", token_file) == "from-file"
    assert token_for("http://localhost:9000", "", token_file) == "from-file"
    assert token_for("http://gpu-box:8765", "", token_file) == ""  # a remote backend's token is never guessed
    assert token_for("http://127.0.0.1:8765", "", tmp_path / "missing") == ""


def test_check_python(logic, tmp_path):
    check = _process().check_python
    with pytest.raises(ValueError, match="no backend Python is set; choose"):
        check("  ")
    with pytest.raises(ValueError, match="not an executable file"):
        check(tmp_path / "missing")
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(ValueError, match="not an executable file"):
        check(plain)
    environment = tmp_path / "venv"
    (environment / "bin").mkdir(parents=True)
    python = environment / "bin" / "python"
    python.write_text("#!/bin/sh\n")
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    assert check(python) == python
    assert check(environment) == python  # the environment's folder is enough
    with pytest.raises(ValueError, match="folder without bin/python, Scripts.python.exe or .venv"):
        check(tmp_path / "venv" / "bin")
    repository = tmp_path / "repo"
    (repository / ".venv" / "bin").mkdir(parents=True)
    linked = repository / ".venv" / "bin" / "python"
    linked.symlink_to(python)  # a venv's python is a link: kept, never resolved to its target
    assert check(repository) == linked  # the repository's folder is enough


def test_check_python_finds_a_windows_environment_in_the_repository(logic, tmp_path):
    """Windows venvs keep the interpreter in Scripts\\python.exe; a chosen folder is searched for it."""
    scripts = tmp_path / "repo" / ".venv" / "Scripts"
    scripts.mkdir(parents=True)
    (scripts / "python.exe").write_bytes(b"MZ")
    (scripts / "python.exe").chmod(0o755)
    check = _process().check_python
    assert check(tmp_path / "repo") == scripts / "python.exe"
    assert check(tmp_path / "repo" / ".venv") == scripts / "python.exe"


def test_backend_environment_drops_slicers_python_settings(logic):
    base = {"PYTHONHOME": "/slicer", "PYTHONPATH": "/slicer/lib", "PATH": "/usr/bin", "HOME": "/home/u"}
    environment = _process().backend_environment(base)
    assert environment == {"PATH": "/usr/bin", "HOME": "/home/u", "PYTHONUNBUFFERED": "1"}
    assert base["PYTHONHOME"] == "/slicer"  # the caller's mapping is left alone


def _wait_for(backend, states, timeout_s=120.0):
    deadline = time.monotonic() + timeout_s
    while (state := backend.state()) not in states:
        assert time.monotonic() < deadline, f"still {state}:\n{backend.log_tail()}"
        time.sleep(0.2)
    return state


def test_a_managed_backend_starts_answers_and_stops(logic):
    """The real ``serve`` from this environment's Python, as the module starts it from the backend's."""
    backend = _process().ManagedBackend(sys.executable, device="cpu", env={**os.environ, "PYTHONHOME": "/nowhere"})
    assert backend.state() == "stopped"
    started = time.monotonic()
    backend.start()
    assert time.monotonic() - started < 2.0, "start() waited for the backend"
    try:
        assert _wait_for(backend, ("running", "exited")) == "running", backend.failure()
        assert oct(backend.folder.stat().st_mode & 0o777) == "0o700"
        client = backend.client()
        assert client.health()["devices"] == ["cpu"]
        assert client.health()["instance"] == backend.instance_id  # the id it was given in its environment
        assert isinstance(client.models(), list)  # the token works
        folder, process = backend.folder, backend.process
        assert str(os.getpid()) in process.args[process.args.index("--parent-pid") + 1]
    finally:
        backend.stop(wait_s=10)
    assert process.poll() is not None and backend.state() == "stopped"
    assert (folder / "backend.log").is_file() and not (folder / "token").exists()  # the log stays, the token not
    backend.remove_files()
    assert not folder.exists()


def test_a_backend_that_exits_says_why(logic):
    backend = _process().ManagedBackend(sys.executable, device="tpu")  # serve refuses the device
    backend.start()
    try:
        assert _wait_for(backend, ("running", "exited"), 60.0) == "exited"
        message = backend.failure()
        assert "exited with code 2" in message and "invalid choice: 'tpu'" in message
        assert f"its log: {backend.log_file}" in message
    finally:
        backend.stop()
    assert "invalid choice: 'tpu'" in backend.log_file.read_text()  # kept after Stop
    backend.remove_files()


FAKE_BACKEND = """#!{python}
import json, os, sys, time
arguments = sys.argv[1:]
token_file = arguments[arguments.index("--token-file") + 1]
with open("started.json", "w") as record:  # in the backend's private folder (its working directory)
    json.dump({{"argv": sys.argv, "instance": os.environ.get("ATTUMAMBA_INSTANCE_ID")}}, record)
with open(token_file, "w") as token:
    token.write("the-managed-token")
time.sleep(120)
"""


@pytest.fixture
def fake_python(tmp_path):
    """Stands for the backend's Python: writes its token file at once and never binds the port, so whatever
    answers there is another program."""
    path = tmp_path / "python"
    path.write_text(FAKE_BACKEND.format(python=sys.executable))
    path.chmod(0o700)
    return path


@pytest.mark.parametrize("health", [(200, {"status": "ok", "version": "0.1"}),
                                    (200, {"status": "ok", "instance": "another-start"}),
                                    (404, "<html>not found</html>")],
                         ids=["no-instance", "another-instance", "not-a-backend"])
def test_managed_backend_is_checked_by_instance_before_the_token(logic, fake_python, health):
    from http_doubles import always, recording_server

    client = importlib.import_module("AttUMambaSegLib.logic.client")
    with recording_server(always(*health)) as squatter:
        backend = _process().ManagedBackend(fake_python, port=int(squatter.url.rsplit(":", 1)[1]))
        backend.start()
        try:
            deadline = time.monotonic() + 20
            while not backend.token_file.is_file() or not squatter.requests:
                assert time.monotonic() < deadline, backend.log_tail()
                assert backend.state() in ("starting", "foreign"), backend.log_tail()
                time.sleep(0.05)
            assert _wait_for(backend, ("foreign",), 5) == "foreign"
            assert "another program answers" in backend.failure() and "token was not sent" in backend.failure()
            with pytest.raises(client.BackendError, match="another program answers"):
                backend.client()
            started = json.loads((backend.folder / "started.json").read_text())
        finally:
            backend.stop(wait_s=5)
            backend.remove_files()
    assert squatter.requests and {r.path for r in squatter.requests} == {"/v1/health"}
    assert squatter.tokens() == []  # the token never went to the program on the port
    assert started["instance"] == backend.instance_id and len(backend.instance_id) >= 32  # in its environment
    assert not any(backend.instance_id in argument for argument in started["argv"])  # not on its command line


def test_a_managed_backend_that_names_its_instance_gets_the_token(logic, fake_python):
    """The same check lets the backend this module started through, and only then sends the token."""
    from http_doubles import recording_server

    backend = None
    with recording_server(lambda method, path: (200, {}, {"status": "ok", "instance": backend.instance_id})) as ours:
        backend = _process().ManagedBackend(fake_python, port=int(ours.url.rsplit(":", 1)[1]))
        backend.start()
        try:
            assert _wait_for(backend, ("running", "exited", "foreign"), 20) == "running"
            assert ours.tokens() == []  # health needs no token
            backend.client().models()
        finally:
            backend.stop(wait_s=5)
            backend.remove_files()
        assert ours.tokens() == ["Bearer the-managed-token"]


class _StartupInfo:
    """Stands for Windows' ``subprocess.STARTUPINFO`` (Linux has none)."""

    def __init__(self):
        self.dwFlags, self.wShowWindow = 0, 1


def test_on_windows_the_backend_starts_without_a_console_window(logic, fake_python, monkeypatch):
    """As ``slicer.util.launchConsoleProcess`` starts processes: a hidden window, and no console at all
    (a console window a user closes would kill the backend)."""
    import subprocess

    process_module = _process()
    backend = process_module.ManagedBackend(fake_python)
    launched = []
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(subprocess, "STARTUPINFO", _StartupInfo, raising=False)
    monkeypatch.setattr(subprocess, "Popen", lambda command, **kwargs: launched.append((command, kwargs)))
    backend.start()
    monkeypatch.undo()
    (command, options), = launched
    startup = options["startupinfo"]
    assert startup.dwFlags & 0x1 and startup.wShowWindow == 0  # STARTF_USESHOWWINDOW, SW_HIDE
    assert options["creationflags"] & 0x08000000  # CREATE_NO_WINDOW
    assert command[command.index("--parent-pid") + 1] == str(os.getpid())
    assert options["stdin"] == subprocess.DEVNULL and options["stderr"] == subprocess.STDOUT
    assert process_module.hidden_console_options() == {}  # elsewhere: nothing added
    backend.process = None
    backend.remove_files()


def test_stop_returns_at_once_and_a_backend_that_ignores_it_is_killed(logic, tmp_path, monkeypatch):
    stubborn = tmp_path / "python"
    stubborn.write_text(f"#!{sys.executable}\nimport signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                        "print('ready', flush=True)\ntime.sleep(120)\n")
    stubborn.chmod(0o700)
    process_module = _process()
    monkeypatch.setattr(process_module, "STOP_GRACE_S", 0.5)
    backend = process_module.ManagedBackend(stubborn)
    backend.start()
    deadline = time.monotonic() + 20
    while "ready" not in backend.log_tail():
        assert time.monotonic() < deadline, backend.log_tail()
        time.sleep(0.05)
    process = backend.process
    started = time.monotonic()
    backend.stop()
    assert time.monotonic() - started < 0.2, "stop() waited for the process"
    assert not backend.alive and backend.state() == "stopped" and not backend.ended()  # terminated, not gone yet
    while not backend.ended():
        assert time.monotonic() - started < 5, "the backend that ignores SIGTERM was never killed"
        time.sleep(0.05)
    assert process.poll() is not None
    backend.remove_files()


def test_state_never_waits_for_a_health_answer(logic, fake_python):
    """A port that accepts but never answers: state() still returns at once (the check runs in the background)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        backend = _process().ManagedBackend(fake_python, port=silent.getsockname()[1])
        backend.start()
        try:
            deadline = time.monotonic() + 20
            while not backend.token_file.is_file():
                assert time.monotonic() < deadline, backend.log_tail()
                time.sleep(0.05)
            for _ in range(5):
                started = time.monotonic()
                assert backend.state() == "starting"
                assert time.monotonic() - started < 0.1
                time.sleep(0.05)
        finally:
            backend.stop(wait_s=5)
            backend.remove_files()
