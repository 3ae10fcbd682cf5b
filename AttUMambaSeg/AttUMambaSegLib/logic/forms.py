"""multipart/form-data bodies for the backend's uploads, streamed from disk.

The standard library can parse such a form but only builds one in memory (``email.mime``),
and a whole-body CT is hundreds of MiB. :func:`multipart_form` gives urllib a generator body
with its exact length: fields as bytes, files read in 1 MiB pieces, each piece counted for the
progress bar. One builder for every upload of :class:`~.client.BackendClient`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path


def multipart_form(files: dict[str, Path], fields: dict[str, str],
                   on_progress: Callable[[int, int], None]) -> tuple[Iterator[bytes], dict[str, str]]:
    """The body (sent lazily; ``on_progress(bytes sent, bytes in all)``) and its Content-Type and -Length."""
    boundary = uuid.uuid4().hex
    parts: list[bytes | Path] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, file in files.items():
        parts.append((f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{file.name}"\r\n'
                      "Content-Type: application/octet-stream\r\n\r\n").encode())
        parts.append(file)
        parts.append(b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    length = sum(p.stat().st_size if isinstance(p, Path) else len(p) for p in parts)
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(length)}
    return _stream(parts, length, on_progress), headers


def _stream(parts: list[bytes | Path], total: int, on_progress: Callable[[int, int], None]) -> Iterator[bytes]:
    """Bytes as they are, files in 1 MiB chunks, counting what was sent."""
    sent = 0
    for part in parts:
        if isinstance(part, Path):
            with part.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    yield chunk
                    sent += len(chunk)
                    on_progress(sent, total)
        else:
            yield part
            sent += len(part)
            on_progress(sent, total)
