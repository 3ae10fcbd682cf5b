"""Small HTTP servers on 127.0.0.1 that record every request: a proxy, a redirector, a program on a port.

They stand for what must never receive the module's traffic; a test asserts on what they saw.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body_bytes: int


@dataclass
class Recorder:
    url: str
    requests: list[Seen] = field(default_factory=list)

    def tokens(self) -> list[str]:
        return [r.headers["authorization"] for r in self.requests if "authorization" in r.headers]


#: (method, path) -> (status, headers, body); a dict or list body is sent as JSON.
Answer = Callable[[str, str], tuple[int, dict[str, str], object]]


@contextmanager
def recording_server(answer: Answer) -> Iterator[Recorder]:
    """A threaded HTTP server on a free loopback port that answers with ``answer`` and records each request."""
    recorder: Recorder

    class Handler(http.server.BaseHTTPRequestHandler):
        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            recorder.requests.append(Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                          len(body)))
            status, headers, content = answer(self.command, self.path)
            data = json.dumps(content).encode() if isinstance(content, (dict, list)) else str(content).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_PUT = do_CONNECT = _handle

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder = Recorder(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def always(status: int, body: object = "", **headers: str) -> Answer:
    """The same answer to every request."""
    return lambda method, path: (status, headers, body)
