"""Bearer-token access: a fresh random token per start, kept in a file only its user can read;
the rules a start must pass to be reachable safely; and the slow-down for wrong tokens."""

from __future__ import annotations

import hmac
import ipaddress
import math
import os
import secrets
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from ..errors import InputError

MIN_CHOSEN_TOKEN_CHARS = 32
UNAUTHORISED_DETAIL = "send 'Authorization: Bearer <token>' with the token the server wrote"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def write_token_file(token: str, path: Path) -> Path:
    """Write ``token`` to ``path`` with mode 0600, replacing an old file atomically.

    The temporary file gets a random name and is created with O_EXCL|O_NOFOLLOW (tempfile.mkstemp),
    and the rename replaces whatever sits at ``path`` without following it: a symlink planted
    at either name never receives the token."""
    path = path.expanduser()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(token + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
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
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    """0.0.0.0 or :: — every interface of the machine."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def check_chosen_token(token: str) -> None:
    if len(token) < MIN_CHOSEN_TOKEN_CHARS:
        raise InputError(f"ATTUMAMBA_TOKEN has {len(token)} characters; a chosen token needs at least "
                         f"{MIN_CHOSEN_TOKEN_CHARS} (e.g. python -c 'import secrets; "
                         "print(secrets.token_urlsafe(32))'), or unset it and the server writes a random one "
                         "to --token-file")


def check_bind(host: str, explicit_token: bool) -> None:
    """A service reachable from other machines must be started with a token its admin chose."""
    if not is_loopback(host) and not explicit_token:
        raise InputError(f"binding to {host} exposes the service beyond this machine; set ATTUMAMBA_TOKEN "
                         "to a token you chose and share it with the clients (or keep --host 127.0.0.1)")


def check_transport(host: str, tls: bool, insecure_http: bool) -> None:
    """Patient data leaves the machine only encrypted, unless the admin says otherwise in so many words."""
    if not is_loopback(host) and not tls and not insecure_http:
        raise InputError(f"binding to {host} would send patient images and the token over the network in clear "
                         "text; give --tls-cert FILE --tls-key FILE, or keep --host 127.0.0.1 and reach it through "
                         "an SSH tunnel (see the README), or say --insecure-http on a network you trust")


class FailedTokenDelay:
    """Slows down token guessing per client address: the ``free``-th wrong token and each further one
    lock that address out for 1, 2, 4... seconds (at most ``cap_s``). A right token clears the
    record; records are forgotten after ``forget_s`` and at most ``max_addresses`` are kept."""

    def __init__(self, free: int = 5, cap_s: float = 4.0, forget_s: float = 600.0, max_addresses: int = 1024,
                 clock: Callable[[], float] = time.monotonic):
        self.free, self.cap_s, self.forget_s, self.max_addresses = free, cap_s, forget_s, max_addresses
        self.clock = clock
        self._records: OrderedDict[str, tuple[int, float, float]] = OrderedDict()  # failures, locked until, last

    def __len__(self) -> int:
        """Addresses on record."""
        return len(self._records)

    def wait_s(self, address: str) -> int:
        """Whole seconds ``address`` must still wait (0: it may try)."""
        record = self._records.get(address)
        if record is None:
            return 0
        now = self.clock()
        if now - record[2] > self.forget_s:
            del self._records[address]
            return 0
        return max(0, math.ceil(record[1] - now))

    def failed(self, address: str) -> None:
        now = self.clock()
        failures, _, last = self._records.pop(address, (0, 0.0, now))
        failures = 1 if now - last > self.forget_s else failures + 1
        over = failures - self.free
        locked_until = now + min(2.0 ** min(over, 30), self.cap_s) if over >= 0 else 0.0
        self._records[address] = (failures, locked_until, now)
        while len(self._records) > self.max_addresses:
            self._records.popitem(last=False)

    def succeeded(self, address: str) -> None:
        self._records.pop(address, None)
