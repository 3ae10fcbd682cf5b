"""``attumamba-seg serve`` start rules (issue 15: items 8, 10, 14): TLS, what a non-loopback bind
needs, chosen-token length, a token file written only once the port listens and never through a
planted symlink. Refusals run the real command line in-process (they stop before serving); the
HTTPS server runs as a real process on loopback."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import stat

import httpx
import pytest
from serve_process import TOKEN, serving

from attumamba.cli import main
from attumamba.server.auth import write_token_file

UNROUTED = "192.0.2.1"      # TEST-NET-1 (RFC 5737): never on this machine, so binding it fails harmlessly


@pytest.fixture
def taken_port():
    """A loopback port another program listens on."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener.getsockname()[1]


def serve(capsys, monkeypatch, tmp_path, *args: str, token: str | None = TOKEN) -> tuple[int, str]:
    """Run ``attumamba-seg serve ARGS`` in-process; (exit code, stderr)."""
    if token is None:
        monkeypatch.delenv("ATTUMAMBA_TOKEN", raising=False)
    else:
        monkeypatch.setenv("ATTUMAMBA_TOKEN", token)
    try:
        code = main(["serve", "--token-file", str(tmp_path / "token"), *args])
    except SystemExit as stopped:        # e.g. uvicorn failing to bind after the token file was written
        code = stopped.code
    return code, capsys.readouterr().err


def self_signed_certificate(folder) -> tuple[str, str]:
    """A certificate for localhost and 127.0.0.1 signed by its own key: (cert PEM, key PEM) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName(names), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_short_chosen_token_is_refused(capsys, monkeypatch, tmp_path, taken_port):
    code, error = serve(capsys, monkeypatch, tmp_path, "--port", str(taken_port), token="only-20-characters-x")
    assert not (tmp_path / "token").exists()
    assert code == 2 and "ATTUMAMBA_TOKEN has 20 characters" in error and "at least 32" in error


def test_non_loopback_bind_needs_tls_or_insecure_http(capsys, monkeypatch, tmp_path):
    cert, key = self_signed_certificate(tmp_path)
    code, error = serve(capsys, monkeypatch, tmp_path, "--host", UNROUTED)
    assert code == 2 and "clear text" in error and "--tls-cert" in error and "--insecure-http" in error
    assert "SSH tunnel" in error
    for choice in (["--insecure-http"], ["--tls-cert", cert, "--tls-key", key]):
        code, error = serve(capsys, monkeypatch, tmp_path, "--host", UNROUTED, *choice)
        assert code == 2 and f"cannot listen on {UNROUTED}" in error, (choice, error)   # past the rule
    code, error = serve(capsys, monkeypatch, tmp_path, "--host", UNROUTED, "--insecure-http", token=None)
    assert code == 2 and "set ATTUMAMBA_TOKEN" in error                # still needs a chosen token
    code, error = serve(capsys, monkeypatch, tmp_path, "--host", "0.0.0.0", "--tls-cert", cert, "--tls-key", key)
    assert code == 2 and "--allowed-host" in error                     # every interface: name the hosts
    code, error = serve(capsys, monkeypatch, tmp_path, "--host", UNROUTED, "--tls-cert", cert)
    assert code == 2 and "give both --tls-cert" in error
    code, error = serve(capsys, monkeypatch, tmp_path, "--host", UNROUTED, "--tls-cert", key, "--tls-key", cert)
    assert code == 2 and "cannot use --tls-cert" in error
    assert not (tmp_path / "token").exists()


def test_tls_serve_with_a_self_signed_certificate(tmp_path):
    cert, key = self_signed_certificate(tmp_path)
    env = {"ATTUMAMBA_TOKEN": TOKEN, "ATTUMAMBA_INSTANCE_ID": "tls-instance"}
    with serving(tmp_path / "serve", "--device", "cpu", "--tls-cert", cert, "--tls-key", key, env=env) as served:
        assert served.url.startswith("https://127.0.0.1:")
        trust = ssl.create_default_context(cafile=cert)
        for host in ("127.0.0.1", "localhost"):
            url = f"https://{host}:{served.port}"
            health = httpx.get(f"{url}/v1/health", verify=trust)
            assert health.status_code == 200 and health.json()["instance"] == "tls-instance"
            models = httpx.get(f"{url}/v1/models", verify=trust, headers={"Authorization": f"Bearer {TOKEN}"})
            assert models.status_code == 200
        with pytest.raises(httpx.ConnectError):                          # an unknown certificate is not trusted
            httpx.get(f"{served.url}/v1/health")
        with pytest.raises(httpx.HTTPError):                             # no plain HTTP on the TLS port
            httpx.get(f"http://127.0.0.1:{served.port}/v1/health")


def test_token_file_written_only_once_listening(capsys, monkeypatch, tmp_path, taken_port):
    code, error = serve(capsys, monkeypatch, tmp_path, "--port", str(taken_port), token=None)
    assert not (tmp_path / "token").exists(), "a token file was written for a port another program holds"
    assert code == 2 and f"cannot listen on 127.0.0.1:{taken_port}" in error and "another backend" in error
    env = {"ATTUMAMBA_TOKEN": "", "ATTUMAMBA_INSTANCE_ID": "fresh"}       # a random token, written to the file
    with serving(tmp_path / "serve", "--device", "cpu", env=env) as served:
        token = served.token_file.read_text().strip()       # present once the 'backend on' line is out
        assert len(token) >= 32 and stat.S_IMODE(served.token_file.stat().st_mode) == 0o600
        assert httpx.get(f"{served.url}/v1/health").json()["instance"] == "fresh"
        assert httpx.get(f"{served.url}/v1/models", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_token_file_does_not_follow_a_planted_symlink(tmp_path):
    folder = tmp_path / "private"
    folder.mkdir()
    victims = [tmp_path / "victim-of-the-temporary-name", tmp_path / "victim-of-the-target"]
    for victim in victims:
        victim.write_text("precious\n")
    os.symlink(victims[0], folder / f".token.{os.getpid()}")        # where the temporary file used to go
    os.symlink(victims[1], folder / "token")
    path = write_token_file("the-secret", folder / "token")
    assert [victim.read_text() for victim in victims] == ["precious\n"] * 2
    assert not path.is_symlink() and path.read_text() == "the-secret\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in folder.iterdir()) == [f".token.{os.getpid()}", "token"]   # no temporary left
