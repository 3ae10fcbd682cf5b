"""The real HTTP service on a loopback port, in a thread of the test process."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn


@contextmanager
def serving(app) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 (a free port); yield its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def tiny_model_backend(models: Path, token: str, limits, bias_lesion: float | None = None) -> Iterator[str]:
    """The service with the tiny test model installed (``ATTUMAMBA_MODELS`` set meanwhile): its base URL."""
    from tiny_model import make_tiny_package

    from attumamba.server import ServerState, create_app

    make_tiny_package(models / "tiny", bias_lesion=bias_lesion)
    saved = os.environ.get("ATTUMAMBA_MODELS")
    os.environ["ATTUMAMBA_MODELS"] = str(models)
    try:
        with serving(create_app(ServerState(token=token, limits=limits))) as url:
            yield url
    finally:
        if saved is None:
            os.environ.pop("ATTUMAMBA_MODELS", None)
        else:
            os.environ["ATTUMAMBA_MODELS"] = saved


@contextmanager
def tiny_model_service(models: Path, token: str, limits) -> Iterator:
    """:func:`tiny_model_backend` with an authorised httpx client."""
    import httpx

    with tiny_model_backend(models, token, limits) as url, \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        yield client


def wait_for_job(client, job_id: str, until=("done", "failed", "cancelled"), timeout: float = 120) -> dict:
    """Poll ``GET /v1/jobs/{id}`` until its state is one of ``until``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/v1/jobs/{job_id}").json()
        if status["state"] in until:
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} stuck in {status}")
