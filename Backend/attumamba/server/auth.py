"""Bearer-token access: a fresh random token per start, kept in a file only its user can read."""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from pathlib import Path

from ..errors import InputError


def new_token() -> str:
    return secrets.token_urlsafe(32)


def write_token_file(token: str, path: Path) -> Path:
    """Write ``token`` to ``path`` with mode 0600 (replacing an old file atomically)."""
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    os.replace(temporary, path)
    return path


def token_matches(header: str | None, token: str) -> bool:
    """Constant-time check of an ``Authorization: Bearer <token>`` header."""
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer "):].strip().encode(), token.encode())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, explicit_token: bool) -> None:
    """A service reachable from other machines must be started with a token its admin chose."""
    if not is_loopback(host) and not explicit_token:
        raise InputError(f"binding to {host} exposes the service beyond this machine; set ATTUMAMBA_TOKEN "
                         "to a token you chose and share it with the clients (or keep --host 127.0.0.1)")
