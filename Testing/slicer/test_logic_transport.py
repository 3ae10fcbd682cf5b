"""The module's client goes straight to the backend: no proxy, no redirect, verified TLS, and no
volumes in clear text to another computer unless the user agreed (issue 15, items 7 and 8).

The backend is the real service on loopback; what must never receive anything (a proxy, a
redirect's target, a plain-HTTP "remote" backend before consent) is a recording server.
"""

from __future__ import annotations

import importlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import TOKEN
from http_doubles import always, recording_server


def _client_module():
    return importlib.import_module("AttUMambaSegLib.logic.client")


@pytest.fixture
def consent(logic):
    """This session's plain-HTTP consents, empty before and after the test."""
    transport = importlib.import_module("AttUMambaSegLib.logic.transport")
    transport.CONSENT.forget()
    yield transport.CONSENT
    transport.CONSENT.forget()


@pytest.fixture
def proxy_environment(monkeypatch):
    """Every proxy variable points at a recording server, as a user's or a hospital's environment may."""
    with recording_server(always(502, "proxy")) as proxy:
        for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        urllib.request.install_opener(None)  # urllib's default opener reads the variables afresh
        yield proxy
    urllib.request.install_opener(None)  # no default opener keeps the proxy after the test


def test_client_ignores_http_proxy_for_loopback(lesion_backend, logic, proxy_environment):
    client = _client_module().BackendClient(lesion_backend, TOKEN)
    assert client.health()["status"] == "ok"
    assert "tiny" in [model["name"] for model in client.models()]  # with the token
    assert proxy_environment.requests == []


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirect_is_not_followed_with_the_token(logic, code):
    with recording_server(always(200, [])) as elsewhere:
        with recording_server(always(code, "", Location=elsewhere.url + "/v1/models")) as backend:
            client = _client_module().BackendClient(backend.url, TOKEN)
            for call in (client.models, lambda: client.submit("study-1", "tiny")):  # a GET and a POST
                with pytest.raises(_client_module().BackendError,
                                   match=f"answered with a redirect to {elsewhere.url}/v1/models.*never followed"
                                   ) as error:
                    call()
                assert error.value.status == code
    assert backend.tokens() == [f"Bearer {TOKEN}"] * 2  # sent to the backend it was meant for, once per call
    assert elsewhere.requests == []  # nothing, least of all the token, went where the redirect pointed


@pytest.fixture
def remote_name(monkeypatch):
    """``gpu-box.test`` resolves to 127.0.0.1, as another computer's name would resolve to its address."""
    resolve = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        return resolve("127.0.0.1" if host == "gpu-box.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return "gpu-box.test"


def test_plain_http_remote_url_needs_confirmation(logic, consent, remote_name, study_files, tmp_path):
    client_module = _client_module()
    answers = {"/v1/studies": {"study_id": "s1"}, "/v1/studies/s1/measure": {"lesions": []}}
    with recording_server(lambda method, path: (200, {}, answers.get(path, "volume"))) as remote:
        url = remote.url.replace("127.0.0.1", remote_name)
        client = client_module.BackendClient(url, TOKEN)
        assert "plain HTTP to another computer" in client.plain_http_warning
        assert f"ssh -N -L 8765:127.0.0.1:8765 user@{remote_name}" in client.plain_http_warning
        assert client.plain_http_consent_needed() == client.plain_http_warning
        for send in (lambda: client.upload_study(*study_files), lambda: client.measure("s1", study_files[0]),
                     lambda: client.download_volume("s1", "ct", tmp_path / "ct.nrrd"),
                     lambda: client.download_labelmap("job-1", tmp_path / "lesions.nrrd")):
            with pytest.raises(client_module.BackendError, match="volumes not sent: .*plain HTTP.*confirm"):
                send()
        assert remote.requests == []  # refused before connecting: no volume, no token went out

        client.consent_to_plain_http()
        again = client_module.BackendClient(url + "/", TOKEN)  # reconnecting: the same backend, the same session
        assert again.plain_http_consent_needed() == "" and again.plain_http_warning  # the status still warns
        assert again.upload_study(*study_files) == {"study_id": "s1"}
        sent = sum(path.stat().st_size for path in study_files)
        (upload,) = remote.requests
        assert (upload.method, upload.path) == ("POST", "/v1/studies") and upload.body_bytes > sent

    other_port = remote.url.replace("127.0.0.1", remote_name).rsplit(":", 1)[0] + ":9"
    assert client_module.BackendClient(other_port).plain_http_consent_needed()  # another backend asks again
    consent.forget()  # a new Slicer session asks again
    assert client.plain_http_consent_needed()
    for safe in ("https://gpu-box.test:8443", "http://127.0.0.1:8765", "http://localhost:8765", "http://[::1]:8765"):
        assert client_module.BackendClient(safe).plain_http_warning == "", safe  # encrypted or this computer


def test_a_url_that_is_not_a_backend_address_says_how_to_type_it(logic):
    for url in ("127.0.0.1:8765", "ftp://gpu-box:21", "http://"):
        with pytest.raises(_client_module().BackendError, match="type it as http://host:port"):
            _client_module().BackendClient(url)


def _self_signed(folder, name):
    """A self-signed certificate for ``name``, 127.0.0.1 and localhost, made with the openssl command."""
    folder.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"), "-days", "1",
                    "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name},IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture
def https_backend(tmp_path):
    """The real ``serve`` with --tls-cert/--tls-key on loopback, also answering to the name gpu-box.test."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = _self_signed(tmp_path / "tls", "gpu-box.test")
    port = importlib.import_module("AttUMambaSegLib.logic.backend_process").free_port()
    token_file = tmp_path / "token"
    process = subprocess.Popen(
        [sys.executable, "-m", "attumamba.cli", "serve", "--port", str(port), "--device", "cpu", "--token-file",
         str(token_file), "--tls-cert", str(cert), "--tls-key", str(key), "--allowed-host", "gpu-box.test"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        while not token_file.is_file():  # written once the port listens
            if process.poll() is not None:
                pytest.fail(f"serve exited: {process.stdout.read().decode(errors='replace')}")
            time.sleep(0.1)
        yield port, token_file.read_text().strip(), cert
    finally:
        process.terminate()
        process.wait(10)


def test_https_backend_with_a_self_signed_certificate(logic, consent, remote_name, https_backend, study_files,
                                                      tmp_path):
    client_module = _client_module()
    port, token, cert = https_backend
    url = f"https://{remote_name}:{port}"
    with pytest.raises(client_module.BackendError, match="could not be verified.*self.signed.*certificate file"):
        client_module.BackendClient(url, token).health()  # the system's CAs do not vouch for it
    other, _ = _self_signed(tmp_path / "other", "gpu-box.test")
    with pytest.raises(client_module.BackendError, match="could not be verified"):
        client_module.BackendClient(url, token, ca_file=other).health()  # another certificate for the same name

    client = client_module.BackendClient(url, token, ca_file=cert)
    assert client.health()["status"] == "ok" and isinstance(client.models(), list)  # verified, with the token
    assert client.plain_http_warning == "" and client.plain_http_consent_needed() == ""
    assert client.upload_study(*study_files)["study_id"]  # volumes go without asking: encrypted
    with pytest.raises(client_module.BackendError, match="type https://"):
        client_module.BackendClient(f"http://127.0.0.1:{port}", token).health()
    with pytest.raises(client_module.BackendError, match="certificate file .*missing.pem does not exist"):
        client_module.BackendClient(url, token, ca_file=tmp_path / "missing.pem")
    (tmp_path / "not.pem").write_text("not a certificate")
    with pytest.raises(client_module.BackendError, match="is not a PEM certificate file"):
        client_module.BackendClient(url, token, ca_file=tmp_path / "not.pem")
