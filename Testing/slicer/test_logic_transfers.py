"""Files to and from the backend in a helper process (issue 17, item 5): progress, results and errors as
the client gives them, cancel and quit end the helper at once, the token never on its command line,
no proxy, no redirect, no plain HTTP to another computer without consent, no console window on Windows.

The backend is the real service on loopback; what must receive nothing is a recording server, and
a backend that never answers is a socket that listens and stays silent.
"""

from __future__ import annotations

import importlib
import io
import json
import select
import socket
import subprocess
import sys
import time
import types
from concurrent.futures import CancelledError
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import REPO, TOKEN
from http_doubles import always, recording_server
from test_logic_transport import proxy_environment  # noqa: F401 (fixture; the helper inherits the variables)


def _module(name: str):
    return importlib.import_module(f"AttUMambaSegLib.logic.{name}")


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (no longer listed, or a zombie nobody reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


@pytest.fixture
def big_study(tmp_path):
    """A CT of 4 MiB (noise: 4 pieces of 1 MiB on the wire) and a PET over the same space, uncompressed."""
    random = np.random.default_rng(3)
    ct = sitk.GetImageFromArray(random.integers(-1000, 1000, (128, 128, 128), dtype=np.int16))
    ct.SetSpacing((2.0, 2.0, 2.0))
    pet = sitk.GetImageFromArray(random.random((32, 32, 32), dtype=np.float32) * 4.0)
    pet.SetSpacing((8.0, 8.0, 8.0))
    for image, name in ((ct, "ct.nrrd"), (pet, "pet.nrrd")):
        sitk.WriteImage(image, str(tmp_path / name), useCompression=False)
    return tmp_path / "ct.nrrd", tmp_path / "pet.nrrd"


@pytest.fixture
def silent_backend():
    """A port that takes connections and never answers: a transfer to it stays in flight."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        yield silent, f"http://127.0.0.1:{silent.getsockname()[1]}"


def test_files_go_up_and_come_down_with_progress(client, big_study, tmp_path):
    transfers = _module("transfers")
    seen = []
    upload = transfers.Transfer(client, ("upload_study", *big_study, {"source": "test"}), on_progress=seen.append)
    study = upload.wait(60)
    assert study["meta"] == {"source": "test"} and study["ct"]["size"] == [128, 128, 128]
    assert seen == sorted(seen) and seen[-1] == 1.0 and len([p for p in seen if 0 < p < 1]) >= 3, seen
    assert not upload._folder.exists()  # the helper's events went with it

    seen.clear()
    back = tmp_path / "back" / "ct.nrrd"
    back.parent.mkdir()
    download = transfers.Transfer(client, ("download_volume", study["study_id"], "ct", back),
                                  ("lesions", "no-such-job"), on_progress=seen.append)
    with pytest.raises(_module("client").BackendError, match="404"):  # the calls run in order, the last fails
        download.wait(60)
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(back))),
                          sitk.GetArrayFromImage(sitk.ReadImage(str(big_study[0]))))
    assert [path.name for path in back.parent.iterdir()] == ["ct.nrrd"]  # no .part left
    assert seen and seen[-1] == 0.5  # the first call of two done, the second failed
    single = transfers.Transfer(client, ("download_volume", study["study_id"], "pet", back.with_name("pet.nrrd")))
    assert single.wait(60) == str(back.with_name("pet.nrrd")) and single.progress == 1.0


def test_errors_come_back_as_the_client_raises_them(client, big_study, tmp_path, monkeypatch):
    client_module, transfers = _module("client"), _module("transfers")
    far = sitk.ReadImage(str(big_study[1]))
    far.SetOrigin((4000.0, 0.0, 0.0))
    sitk.WriteImage(far, str(tmp_path / "far.nrrd"))
    refused = client_module.BackendClient("http://127.0.0.1:9", TOKEN, timeout=2)
    statuses = []
    for calling, call in ((client, ("upload_study", big_study[0], tmp_path / "far.nrrd")),        # 422 {error, detail}
                          (client, ("download_volume", "0" * 32, "ct", tmp_path / "x.nrrd")),       # 404
                          (refused, ("download_volume", "0" * 32, "ct", tmp_path / "x.nrrd"))):     # nothing listens
        with pytest.raises(client_module.BackendError) as direct:
            getattr(calling, call[0])(*call[1:])
        with pytest.raises(client_module.BackendError) as helper:
            transfers.Transfer(calling, call).wait(60)
        assert (str(helper.value), helper.value.status) == (str(direct.value), direct.value.status)
        statuses.append(helper.value.status)
    assert statuses == [422, 404, None] and "not reachable" in str(helper.value)

    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'no module named encodings' >&2\nexit 1\n")
    broken.chmod(0o700)
    monkeypatch.setattr(sys, "executable", str(broken))
    with pytest.raises(client_module.BackendError, match="transfer helper ended with code 1.*\nno module named"):
        transfers.Transfer(client, ("download_volume", "0" * 32, "ct", tmp_path / "x.nrrd")).wait(30)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "missing" / "PythonSlicer"))
    with pytest.raises(client_module.BackendError, match="cannot start the transfer helper .*PythonSlicer"):
        transfers.Transfer(client, ("download_volume", "0" * 32, "ct", tmp_path / "x.nrrd"))


def test_cancel_ends_the_helper_at_once_and_the_token_never_shows(logic, silent_backend, tmp_path):
    silent, url = silent_backend
    transfer = _module("transfers").Transfer(_module("client").BackendClient(url, TOKEN),
                                             ("download_volume", "s1", "ct", tmp_path / "ct.nrrd"))
    silent.settimeout(30)
    connection, _ = silent.accept()  # the helper asked: it is in flight
    with connection:
        ready, _, _ = select.select([connection], [], [], 10)
        head = connection.recv(65536).decode("latin-1") if ready else ""
        assert f"Authorization: Bearer {TOKEN}" in head  # it had the token (from its stdin) ...
        pid = transfer.process.pid
        for shown in ("cmdline", "environ"):  # ... which no one sees on its command line or in its environment
            assert TOKEN.encode() not in Path(f"/proc/{pid}/{shown}").read_bytes(), shown
        assert not transfer.done() and transfer.progress == 0.0
        started = time.monotonic()
        assert transfer.cancel()
        assert time.monotonic() - started < 0.1, "cancel() waited"
        assert transfer.wait_ended(2.0) and _gone(pid), "the helper outlived the cancel by 2 s"
    assert transfer.done() and transfer.cancelled() and not transfer.cancel()
    with pytest.raises(CancelledError):
        transfer.result()
    deadline = time.monotonic() + 10
    while transfer._folder.exists():
        assert time.monotonic() < deadline, "the cancelled transfer left its files"
        time.sleep(0.05)
    assert not (tmp_path / "ct.nrrd").exists()


def test_the_helper_uses_no_proxy_and_follows_no_redirect(logic, proxy_environment, tmp_path):
    with recording_server(always(200, "volume")) as elsewhere:
        with recording_server(always(302, "", Location=elsewhere.url + "/v1/studies/s1/volumes/ct")) as backend:
            client = _module("client").BackendClient(backend.url, TOKEN)
            with pytest.raises(_module("client").BackendError, match="redirect to .*never followed") as error:
                _module("transfers").Transfer(client, ("download_volume", "s1", "ct", tmp_path / "ct.nrrd")).wait(30)
    assert error.value.status == 302
    assert backend.tokens() == [f"Bearer {TOKEN}"]  # straight to the backend, with the token
    assert elsewhere.requests == [] and proxy_environment.requests == []
    assert not (tmp_path / "ct.nrrd").exists()


class _StartupInfo:
    """Stands for Windows' ``subprocess.STARTUPINFO`` (Linux has none)."""

    def __init__(self):
        self.dwFlags, self.wShowWindow = 0, 1


class _KeptBytes(io.BytesIO):
    def close(self):  # keep what was written readable after the transfer closes it
        pass


@pytest.fixture
def launches(monkeypatch):
    """``subprocess.Popen`` recorded: (command, options, stdin) per start; the process never ends."""
    started = []

    def popen(command, **options):
        stdin = _KeptBytes()
        started.append((command, options, stdin))
        return types.SimpleNamespace(stdin=stdin, pid=0, returncode=None, poll=lambda: None, kill=lambda: None,
                                     wait=lambda timeout=None: 0)

    monkeypatch.setattr(subprocess, "Popen", popen)
    return started


def test_on_windows_the_helper_starts_hidden_and_gets_the_token_on_stdin(logic, launches, monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(subprocess, "STARTUPINFO", _StartupInfo, raising=False)
    certificates = pytest.importorskip("certifi").where()  # any PEM file stands for the backend's certificate
    client = _module("client").BackendClient("https://gpu-box.test:8443", TOKEN, timeout=7, ca_file=certificates)
    transfer = _module("transfers").Transfer(client, ("download_volume", "s1", "ct", tmp_path / "ct.nrrd"))
    monkeypatch.setattr(sys, "platform", "linux")
    (command, options, stdin), = launches
    assert options["startupinfo"].dwFlags & 0x1 and options["startupinfo"].wShowWindow == 0  # USESHOWWINDOW, HIDE
    assert options["creationflags"] & 0x08000000  # CREATE_NO_WINDOW: no console a user could close
    assert command[0] == sys.executable and command[-2:] == ["AttUMambaSegLib.logic.transfer_process",
                                                             str(transfer._folder / "events.jsonl")]
    assert TOKEN not in " ".join(command) and "env" not in options
    job = json.loads(stdin.getvalue())
    assert job == {"url": "https://gpu-box.test:8443", "token": TOKEN, "ca_file": certificates, "timeout": 7,
                   "calls": [["download_volume", ["s1", "ct", str(tmp_path / "ct.nrrd")]]]}
    transfer.cancel()


def test_plain_http_to_another_computer_needs_consent_before_the_helper_starts(logic, launches, tmp_path):
    transport = _module("transport")
    transport.CONSENT.forget()
    client = _module("client").BackendClient("http://gpu-box.test:8765", TOKEN)
    call = ("upload_study", tmp_path / "ct.nrrd", tmp_path / "pet.nrrd")
    with pytest.raises(_module("client").BackendError, match="volumes not sent: .*plain HTTP"):
        _module("transfers").Transfer(client, call)
    assert launches == []  # nothing started, so nothing left with the token
    client.consent_to_plain_http()
    try:
        _module("transfers").Transfer(client, call).cancel()
    finally:
        transport.CONSENT.forget()
    assert len(launches) == 1
    with pytest.raises(ValueError, match="not transfer calls: \\['cancel'\\]"):
        _module("transfers").Transfer(client, ("cancel", "job-1"))


SLICER = """
import sys, time
sys.path.insert(0, {module_folder!r})
from AttUMambaSegLib.logic.client import BackendClient
from AttUMambaSegLib.logic.transfers import Transfer

transfer = Transfer(BackendClient({url!r}, "token", timeout=600), ("download_volume", "s1", "ct", {target!r}))
print(transfer.process.pid, flush=True)
time.sleep(0.5)
assert not transfer.done(), "the silent backend answered"
print("in flight", flush=True)
"""


def test_quitting_ends_a_transfer_in_flight_at_once(logic, silent_backend, tmp_path):
    """Slicer quits (or crashes) with a transfer in flight: it ends at once and so does the helper."""
    _, url = silent_backend
    script = SLICER.format(module_folder=str(REPO / "AttUMambaSeg"), url=url, target=str(tmp_path / "ct.nrrd"))
    slicer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([slicer.stdout], [], [], 30)
        pid = int(slicer.stdout.readline()) if ready else pytest.fail(slicer.stderr.read())
        assert slicer.stdout.readline().strip() == "in flight", slicer.stderr.read()
        reached = time.monotonic()
        slicer.wait(10)
        assert slicer.returncode == 0, slicer.stderr.read()
        while not _gone(pid):
            assert time.monotonic() - reached < 2.0, "the transfer helper outlived Slicer by 2 s"
            time.sleep(0.02)
    finally:
        if slicer.poll() is None:
            slicer.kill()
            slicer.wait()
