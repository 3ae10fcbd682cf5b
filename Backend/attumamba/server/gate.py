"""The request gate: the checks every HTTP request passes before the API reads a byte of its body.

In order: the Host header names this server (no DNS rebinding), the bearer token (wrong ones
slowed down per client address), the body's size against its route's cap (the declared length at
once, the bytes as they stream), and a slot among the few uploads received at a time. A refusal
is a JSON ``{error, detail}`` that closes the connection, so an unread body is never read.
"""

from __future__ import annotations

import asyncio
import logging
import re

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import InputError
from .auth import UNAUTHORISED_DETAIL, FailedTokenDelay, is_loopback, is_wildcard, token_matches

log = logging.getLogger("attumamba.server")

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
OPEN_PATHS = frozenset({"/v1/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
UPLOAD_ROUTES = ((re.compile(r"/v1/studies"), 2), (re.compile(r"/v1/studies/[^/]+/(measure|labelmaps)"), 1),
                 (re.compile(r"/v1/studies/[^/]+/dicom"), 1))  # a labelmap + the DICOM references
JSON_BODY_CAP = 1 << 20
UPLOAD_SLACK = 1 << 20      # multipart framing, file names and the meta/options fields
UPLOAD_RETRY_S = 5
# After a refusal sent while the client may still be sending its body: keep reading (and dropping)
# for this long, at most this much, before the connection closes — closing a socket with unread
# data resets it, and the reset can destroy the refusal before the client has read it.
LINGER_S, LINGER_BYTES = 2.0, 4 << 20


class BodyTooLarge(Exception):
    """Raised into the app when a body passes its cap; the gate answers 413 in the app's place."""


def allowed_host_names(bind_host: str, extra: list[str] | tuple[str, ...] = ()) -> tuple[str, ...]:
    """Host names clients may use besides the loopback names: the bound address and ``extra``."""
    names = [host_name(name) for name in extra]
    if is_wildcard(bind_host) and not names:
        raise InputError(f"binding to {bind_host} listens on every network interface; name the host names or "
                         "addresses clients will use with --allowed-host NAME (e.g. the name in the TLS certificate)")
    if not is_wildcard(bind_host) and not is_loopback(bind_host):
        names.insert(0, host_name(bind_host))
    return tuple(names)


def host_name(header: str) -> str:
    """The name in a Host header, lower-case, without port or IPv6 brackets."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.partition(":")[0] if header.count(":") <= 1 else header


def upload_files(method: str, path: str) -> int:
    """How many volume files a request to ``path`` carries (0: not an upload)."""
    if method != "POST":
        return 0
    return next((files for pattern, files in UPLOAD_ROUTES if pattern.fullmatch(path)), 0)


async def _drain(receive: Receive, cap: int) -> None:
    """Read a request body to its end (or ``cap`` bytes), keeping nothing."""
    received = 0
    while received <= cap:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        received += len(message.get("body", b""))


async def answer_then_close(response: JSONResponse, receive: Receive, send: Send) -> None:
    """Send ``response`` (which says ``Connection: close``), then let the client read it before the close:
    the body goes out, the request's unread bytes are dropped for a bounded moment (:data:`LINGER_S`,
    :data:`LINGER_BYTES`; the client usually hangs up first), and only then does the response end."""
    await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body, "more_body": True})
    dropped = 0
    try:
        async with asyncio.timeout(LINGER_S):
            while dropped < LINGER_BYTES:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    break
                dropped += len(message.get("body", b""))
    except TimeoutError:
        pass
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def refusal(status: int, error: str, detail: str, retry_after_s: int | None = None) -> JSONResponse:
    headers = {"Connection": "close"}
    if retry_after_s is not None:
        headers["Retry-After"] = str(retry_after_s)
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


class RequestGate:
    """Pure ASGI middleware in front of the API (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, token: str, max_upload_bytes: int, allowed_hosts: tuple[str, ...] = (),
                 upload_slots: int = 2):
        self.app, self.token, self.max_upload_bytes, self.upload_slots = app, token, max_upload_bytes, upload_slots
        self.hosts = frozenset(LOOPBACK_NAMES) | {host_name(name) for name in allowed_hosts}
        self.delay = FailedTokenDelay()
        self.uploads_running = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":          # the API has none: refuse the handshake unexamined
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":                # lifespan
            await self.app(scope, receive, send)
            return
        files = upload_files(scope["method"], scope["path"])
        cap = files * self.max_upload_bytes + UPLOAD_SLACK if files else JSON_BODY_CAP
        refused = self._refusal(scope, Headers(scope=scope), cap, files)
        if refused is not None:
            await answer_then_close(refused, receive, send)
            return
        if files and self.uploads_running >= self.upload_slots:
            # An authorised upload within its cap: read and drop its body first, so that clients
            # that send the whole body before reading (urllib) see this answer, not a broken pipe.
            await _drain(receive, cap)
            busy = refusal(503, "busy", f"{self.uploads_running} uploads are being received already; retry in "
                           f"{UPLOAD_RETRY_S} s", retry_after_s=UPLOAD_RETRY_S)
            await busy(scope, receive, send)
            return
        self.uploads_running += bool(files)
        try:
            too_large = await self._run_capped(scope, receive, send, cap)
        finally:
            self.uploads_running -= bool(files)
        if too_large:   # answered once the upload slot is free again (the answer lingers a moment)
            await answer_then_close(self._too_large(cap, files), receive, send)

    def _refusal(self, scope: Scope, headers: Headers, cap: int, files: int) -> JSONResponse | None:
        host = headers.get("host", "")
        if host_name(host) not in self.hosts:
            log.warning("refused Host %r from %s", host, (scope.get("client") or ("?",))[0])
            return refusal(421, "wrong host", f"this server answers to {', '.join(sorted(self.hosts))}, not Host "
                           f"{host!r}; use one of those names (serve --allowed-host NAME adds one)")
        if not (scope["method"] in ("GET", "HEAD") and scope["path"] in OPEN_PATHS):
            refused = self._token_refusal(scope, headers.get("authorization"))
            if refused is not None:
                return refused
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            return self._too_large(cap, files)
        return None

    def _token_refusal(self, scope: Scope, header: str | None) -> JSONResponse | None:
        if header is None:   # not a guess (e.g. a web page's simple POST): refused, not counted
            return refusal(401, "unauthorised", UNAUTHORISED_DETAIL)
        address = (scope.get("client") or ("unknown",))[0]
        wait_s = self.delay.wait_s(address)
        if wait_s:
            return refusal(429, "too many wrong tokens", f"too many requests with a wrong token from {address}; "
                           f"wait {wait_s} s, then send the token from the server's token file", retry_after_s=wait_s)
        if token_matches(header, self.token):
            self.delay.succeeded(address)
            return None
        self.delay.failed(address)
        if locked_s := self.delay.wait_s(address):
            log.warning("wrong tokens from %s: its next try waits %d s", address, locked_s)
        return refusal(401, "unauthorised", UNAUTHORISED_DETAIL)

    def _too_large(self, cap: int, files: int) -> JSONResponse:
        if files:
            detail = (f"this upload may send at most {cap >> 20} MiB ({files} volume file(s) of at most "
                      f"{self.max_upload_bytes >> 20} MiB each); send smaller or compressed volumes, or start "
                      "serve with a larger --max-upload-mb")
        else:
            detail = f"this request may send at most {cap >> 20} MiB; it sends more"
        return refusal(413, "request too large", detail)

    async def _run_capped(self, scope: Scope, receive: Receive, send: Send, cap: int) -> bool:
        """Run the app with a receive that stops at ``cap`` bytes; True when the body passed it before the app
        answered (the caller then answers 413 instead of the app)."""
        received, cut, started = 0, False, False

        async def capped_receive() -> Message:
            nonlocal received, cut
            if cut:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    cut = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if cut and not started:
                return          # the app's answer to a body it never got whole
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, capped_receive, guarded_send)
        except Exception:
            if not cut:
                raise
        return cut and not started
