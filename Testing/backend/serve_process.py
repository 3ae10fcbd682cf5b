"""``attumamba-seg serve`` as a separate process on a loopback port, watched from outside: its
memory (RSS), the bytes it holds in temporary files, and raw HTTP requests whose body is streamed
chunk by chunk, so a test can see when the server answers and stops reading."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CLI = Path(sys.executable).parent / "attumamba-seg"
TOKEN = "chosen-token-for-tests-0123456789abcdef"     # 39 characters: a valid chosen token


@dataclass
class Served:
    process: subprocess.Popen
    url: str
    token_file: Path
    temp_dir: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def rss_bytes(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024

    def temp_bytes(self) -> int:
        """Bytes in the server's temporary folder: its files, and open files there that have no name
        (Linux O_TMPFILE, as Starlette's spooled uploads use)."""
        total = sum(path.stat().st_size for path in self.temp_dir.rglob("*") if path.is_file())
        folder = str(self.temp_dir)
        for link in Path(f"/proc/{self.process.pid}/fd").iterdir():
            try:
                if os.readlink(link).startswith(folder) and os.readlink(link).endswith("(deleted)"):
                    total += link.stat().st_size
            except OSError:        # closed while we looked
                pass
        return total


@contextmanager
def serving(folder: Path, *args: str, env: dict[str, str] | None = None, timeout_s: float = 180) -> Iterator[Served]:
    """Run ``attumamba-seg serve --port 0 ARGS`` until its 'backend on URL' line; stop it afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    temp_dir, token_file, log = folder / "tmp", folder / "token", folder / "serve.log"
    temp_dir.mkdir(exist_ok=True)
    environment = {**os.environ, "TMPDIR": str(temp_dir), **(env or {})}
    with log.open("w") as output:
        process = subprocess.Popen([str(CLI), "serve", "--port", "0", "--token-file", str(token_file), *args],
                                   stdout=output, stderr=subprocess.STDOUT, env=environment)
    try:
        deadline = time.monotonic() + timeout_s
        while not (found := re.search(r"backend on (https?://\S+)", log.read_text())):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start: {log.read_text()}")
            time.sleep(0.05)
        yield Served(process, found.group(1), token_file, temp_dir)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int              # body bytes the client got out before the answer or the cut


def stream_request(port: int, head: str, chunks: Iterator[bytes], on_chunk: Callable[[int], None] = lambda sent: None,
                   answer_timeout_s: float = 10.0) -> Answer:
    """Send ``head`` (request line and headers, without the blank line), then the body ``chunks`` as
    long as the server has not answered; then read its answer."""
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.settimeout(5.0)
        connection.sendall(head.encode("latin-1") + b"\r\n\r\n")
        sent = 0
        for chunk in chunks:
            if select.select([connection], [], [], 0)[0]:
                break                                   # it answered: stop sending, as a client would
            try:
                connection.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break
            sent += len(chunk)
            on_chunk(sent)
        connection.settimeout(answer_timeout_s)
        data = b""
        try:
            while part := connection.recv(1 << 16):
                data += part
                if _complete(data):
                    break
        except (ConnectionResetError, TimeoutError):
            pass
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    if not lines[0]:
        raise AssertionError(f"no answer after {sent} body bytes")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return Answer(int(lines[0].split()[1]), headers, body, sent)


def _complete(data: bytes) -> bool:
    head, separator, body = data.partition(b"\r\n\r\n")
    found = re.search(rb"(?i)content-length: (\d+)", head)
    return bool(separator and found and len(body) >= int(found.group(1)))


def zeros(total: int, chunk: int = 1 << 20, prefix: bytes = b"") -> Iterator[bytes]:
    """``prefix`` then zero bytes, ``total`` in all, in pieces of ``chunk``."""
    yield prefix
    block = bytes(chunk)
    for start in range(len(prefix), total, chunk):
        yield block[:min(chunk, total - start)]


def chunked(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """``pieces`` in HTTP/1.1 chunked transfer coding."""
    for piece in pieces:
        if piece:
            yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    yield b"0\r\n\r\n"
