"""Running the app on uvicorn: bind the port first (a taken port fails at once, before anything
is written), TLS 1.2 or newer when given a certificate, and a hook that runs only once the server
accepts connections (that is when the token file may appear)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import uvicorn

from ..errors import InputError

TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"   # forward secrecy, AEAD only (TLS 1.3 has its own list)


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host.strip("[]"), port), family=family, backlog=2048)
    except OSError as error:
        raise InputError(f"cannot listen on {host}:{port}: {error.strerror or error}; is another backend running "
                         "there? choose another --port (0 picks a free one) or --host") from None


def check_tls_files(cert: Path | None, key: Path | None) -> tuple[Path, Path] | None:
    """Both files or neither; a pair that does not load is refused before the server starts."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise InputError("give both --tls-cert FILE (the certificate chain, PEM) and --tls-key FILE (its private key)")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        raise InputError(f"cannot use --tls-cert {cert} with --tls-key {key}: {error}; give a PEM certificate "
                         "and the unencrypted PEM key that belongs to it") from None
    return cert, key


class _AnnouncingServer(uvicorn.Server):
    """uvicorn's server calling ``on_listening(port)`` once its sockets accept connections."""

    def __init__(self, config: uvicorn.Config, on_listening: Callable[[int], None]):
        super().__init__(config)
        self.on_listening = on_listening

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self.on_listening(self.servers[0].sockets[0].getsockname()[1])


def serve(app, listener: socket.socket, tls: tuple[Path, Path] | None, on_listening: Callable[[int], None]) -> None:
    """Serve ``app`` on ``listener`` until interrupted."""
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=10,
                            ssl_certfile=tls and str(tls[0]), ssl_keyfile=tls and str(tls[1]),
                            ssl_ciphers=TLS12_CIPHERS)
    config.load()
    if config.ssl is not None:
        config.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
    _AnnouncingServer(config, on_listening).run(sockets=[listener])
