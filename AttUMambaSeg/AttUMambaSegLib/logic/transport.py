"""How the module's client reaches a backend: directly, verified, and never in clear text unasked.

The backend is on this computer, reached directly, or through an SSH tunnel, so no HTTP proxy
is ever used (a proxy from ``http_proxy`` or the system settings would see the token and the
patient's volumes) and no redirect is followed (urllib would re-send the token to wherever it
points). ``https`` URLs are verified against the system's trust store, or against the one
certificate file the user chose for a backend with a self-signed certificate. Volumes sent
over plain HTTP to another computer cross the network readable by anyone on the path: the
user confirms that once per backend and Slicer session (:data:`CONSENT`), after a warning.
"""

from __future__ import annotations

import ipaddress
import ssl
import urllib.parse
import urllib.request
from pathlib import Path

SSH_TUNNEL_HINT = ("use https (attumamba-seg serve --tls-cert/--tls-key) or an SSH tunnel "
                   "(ssh -N -L 8765:127.0.0.1:8765 user@{host}, then connect to http://127.0.0.1:8765)")


class TransportError(ValueError):
    """A backend URL or certificate file that cannot be used; the message says what to do."""


def check_url(url: str) -> str:
    """``url`` without a trailing slash, or a :class:`TransportError` saying what a backend URL looks like."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TransportError(f"'{url}' is not a backend URL; type it as http://host:port or https://host:port")
    return url.strip().rstrip("/")


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` names this computer by a loopback name or address (names are not resolved)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``, the unit a consent is given for."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def plain_http_warning(url: str) -> str:
    """Why sending volumes to ``url`` is unsafe: plain HTTP to another computer; '' for https or loopback."""
    if urllib.parse.urlsplit(url).scheme != "http" or is_loopback_url(url):
        return ""
    host = urllib.parse.urlsplit(url).hostname
    return (f"{origin(url)} is plain HTTP to another computer: the token and the patient's volumes would "
            f"cross the network unencrypted, readable by anyone on the way. "
            + SSH_TUNNEL_HINT.format(host=host) + ".")


class PlainHttpConsent:
    """The backends the user agreed to send volumes to over plain HTTP, for this session only."""

    def __init__(self):
        self._origins: set[str] = set()

    def needed(self, url: str) -> str:
        """The warning to show before volumes go to ``url``; '' when safe or already agreed."""
        warning = plain_http_warning(url)
        return "" if origin(url) in self._origins else warning

    def confirm(self, url: str) -> None:
        self._origins.add(origin(url))

    def forget(self) -> None:
        self._origins.clear()


#: This Slicer session's consents (never saved: each session asks again).
CONSENT = PlainHttpConsent()


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Turns every 3xx into an HTTPError: nothing, least of all the token, is re-sent elsewhere."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def tls_context(ca_file: str | Path = "") -> ssl.SSLContext:
    """Certificate and host name checks on; trusted: the system's CAs, or only ``ca_file`` when given."""
    if not str(ca_file or "").strip():
        return ssl.create_default_context()
    path = Path(str(ca_file).strip()).expanduser()
    if not path.is_file():
        raise TransportError(f"the backend certificate file {path} does not exist; choose the backend's "
                             "certificate (the --tls-cert file) or the CA that signed it")
    try:
        return ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError) as error:
        raise TransportError(f"{path} is not a PEM certificate file ({error}); choose the backend's "
                             "certificate (the --tls-cert file) or the CA that signed it") from None


def direct_opener(ca_file: str | Path = "") -> urllib.request.OpenerDirector:
    """An opener that never uses a proxy (neither the environment's nor the system's) nor follows a redirect."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _RefuseRedirects(),
                                       urllib.request.HTTPSHandler(context=tls_context(ca_file)))
