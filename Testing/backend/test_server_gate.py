"""The request gate (issue 15: items 3, 4's upload slots, 8's slow-down, 9, 10's health) through a
real ``attumamba-seg serve`` process on loopback, watched from outside: its answers, its memory
(RSS) and the bytes it holds in its temporary folder while hostile bodies stream in."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from serve_process import TOKEN, chunked, serving, stream_request, zeros

INSTANCE = "instance-for-the-gate-tests"
MAX_UPLOAD_MB = 4                       # caps: 9 MiB for POST /v1/studies, 5 MiB for measure, 1 MiB JSON
HOSTILE_BYTES = 64 << 20
MULTIPART_HEAD = (b'--XyZ\r\nContent-Disposition: form-data; name="ct"; filename="ct.nrrd"\r\n'
                  b"Content-Type: application/octet-stream\r\n\r\n")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gate")
    env = {"ATTUMAMBA_TOKEN": TOKEN, "ATTUMAMBA_INSTANCE_ID": INSTANCE,
           "ATTUMAMBA_MODELS": str(folder / "no-models")}
    with serving(folder, "--device", "cpu", "--max-upload-mb", str(MAX_UPLOAD_MB), env=env) as server:
        yield server


def authorised(extra: str = "") -> str:
    return f"Authorization: Bearer {TOKEN}" + (f"\r\n{extra}" if extra else "")


class Watch:
    """Peaks of the server's RSS growth and temporary bytes, sampled as a body streams in."""

    def __init__(self, served):
        self.served, self.rss_0 = served, served.rss_bytes()
        self.rss_growth = self.temp_peak = 0

    def __call__(self, sent: int) -> None:
        self.rss_growth = max(self.rss_growth, self.served.rss_bytes() - self.rss_0)
        self.temp_peak = max(self.temp_peak, self.served.temp_bytes())


def wait_until_no_temp_bytes(served, timeout_s: float = 5.0) -> int:
    deadline = time.monotonic() + timeout_s
    while (left := served.temp_bytes()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_health_identifies_the_instance_and_answers_at_once(served):
    started = time.monotonic()
    health = httpx.get(f"{served.url}/v1/health", timeout=10)
    assert time.monotonic() - started < 2.0, "the first health call must not import or build anything"
    assert health.status_code == 200 and health.json()["instance"] == INSTANCE
    assert health.json()["scan"]["cpu"] in ("compiled-cpu", "torch") and health.json()["devices"] == ["cpu"]


def test_unauthenticated_bad_json_gets_401_not_422(served):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        headers["Content-Type"] = "application/json"
        answer = httpx.post(f"{served.url}/v1/jobs", content=b"{not json", headers=headers)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"] == "unauthorised" and "Bearer <token>" in answer.json()["detail"]
    assert httpx.get(f"{served.url}/v1/no-such-route").status_code == 401      # no route list for strangers
    authorised_answer = httpx.post(f"{served.url}/v1/jobs", content=b"{not json",
                                   headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert authorised_answer.status_code == 422 and authorised_answer.json()["error"] == "invalid request"


def test_unauthenticated_upload_spools_nothing(served):
    watch = Watch(served)
    head = (f"POST /v1/studies HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n"
            f"Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: {HOSTILE_BYTES}")
    answer = stream_request(served.port, head, zeros(HOSTILE_BYTES, prefix=MULTIPART_HEAD), watch)
    assert watch.temp_peak == 0, f"{watch.temp_peak} bytes spooled for a caller without a token"
    assert watch.rss_growth < 16 << 20 and answer.sent < 32 << 20, (watch.rss_growth, answer.sent)
    assert answer.status == 401 and b"unauthorised" in answer.body and answer.headers["connection"] == "close"
    assert httpx.get(f"{served.url}/v1/health").status_code == 200


def test_plain_post_over_the_cap_is_stopped(served):
    # a declared length over the cap: refused from the headers alone
    head = f"POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\n{authorised()}\r\nContent-Length: {HOSTILE_BYTES}"
    declared = stream_request(served.port, head, zeros(HOSTILE_BYTES))
    assert declared.status == 413 and declared.headers["connection"] == "close"
    # no length (chunked): counted as it streams, cut at the cap, the rest never read
    watch = Watch(served)
    head = f"POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\n{authorised('Transfer-Encoding: chunked')}"
    streamed = stream_request(served.port, head, chunked(zeros(HOSTILE_BYTES, prefix=b'{"study_id": "')), watch)
    assert streamed.sent < 32 << 20 and watch.rss_growth < 16 << 20, (streamed.sent, watch.rss_growth)
    assert streamed.status == 413, streamed
    assert b'"error":"request too large"' in streamed.body and b"at most 1 MiB" in streamed.body
    assert httpx.get(f"{served.url}/v1/health").status_code == 200


def test_upload_over_the_cap_is_stopped_while_it_streams(served):
    watch = Watch(served)
    head = (f"POST /v1/studies HTTP/1.1\r\nHost: localhost\r\n"
            f"{authorised('Content-Type: multipart/form-data; boundary=XyZ')}\r\nTransfer-Encoding: chunked")
    answer = stream_request(served.port, head, chunked(zeros(HOSTILE_BYTES, prefix=MULTIPART_HEAD)), watch)
    cap = (2 * MAX_UPLOAD_MB + 1) << 20
    assert watch.temp_peak <= cap and answer.sent < 32 << 20, (watch.temp_peak, answer.sent)
    assert answer.status == 413 and b"at most 9 MiB" in answer.body and b"--max-upload-mb" in answer.body
    assert wait_until_no_temp_bytes(served) == 0, "the cut-off upload left a temporary file"


def test_concurrent_uploads_are_bounded(served):
    head = (f"POST /v1/studies HTTP/1.1\r\nHost: localhost\r\n"
            f"{authorised('Content-Type: multipart/form-data; boundary=XyZ')}\r\nContent-Length: {2 << 20}\r\n\r\n")
    stalled = [socket.create_connection(("127.0.0.1", served.port)) for _ in range(2)]
    try:
        for connection in stalled:                 # two uploads that are being received, slowly
            connection.sendall(head.encode() + MULTIPART_HEAD + bytes(1000))
        time.sleep(0.5)
        files = {"ct": ("ct.nrrd", b"not a volume"), "pet": ("pet.nrrd", b"not a volume")}
        third = httpx.post(f"{served.url}/v1/studies", files=files, headers={"Authorization": f"Bearer {TOKEN}"})
        assert third.status_code == 503 and third.headers["retry-after"] == "5", third.text
        assert third.json()["error"] == "busy" and "retry in 5 s" in third.json()["detail"]
    finally:
        for connection in stalled:
            connection.close()
    deadline = time.monotonic() + 5
    while (after := httpx.post(f"{served.url}/v1/studies", files=files,
                               headers={"Authorization": f"Bearer {TOKEN}"})).status_code == 503:
        assert time.monotonic() < deadline, "the slots of the closed uploads were never given back"
        time.sleep(0.1)
    assert after.status_code == 422 and after.json()["error"] == "invalid input"      # past the gate
    assert wait_until_no_temp_bytes(served) == 0


def test_host_header_must_be_a_bound_name(served):
    token = {"Authorization": f"Bearer {TOKEN}"}
    for path in ("/docs", "/openapi.json", "/v1/health", "/v1/models"):
        for host in ("evil.example", f"evil.example:{served.port}", f"127.0.0.1.nip.io:{served.port}", ""):
            answer = httpx.get(f"{served.url}{path}", headers={**token, "Host": host})
            assert answer.status_code == 421, (path, host, answer.status_code)
            assert answer.json()["error"] == "wrong host" and "--allowed-host" in answer.json()["detail"]
        for host in (f"localhost:{served.port}", f"127.0.0.1:{served.port}", f"[::1]:{served.port}", "LOCALHOST"):
            assert httpx.get(f"{served.url}{path}", headers={**token, "Host": host}).status_code == 200, (path, host)


def test_failed_tokens_are_slowed_down(served):
    guesser = httpx.Client(base_url=served.url, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    right, wrong = {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": "Bearer guess"}
    with guesser:
        assert [guesser.get("/v1/models", headers=wrong).status_code for _ in range(5)] == [401] * 5
        locked = guesser.get("/v1/models", headers=right)            # the right token waits too
        assert locked.status_code == 429 and locked.headers["retry-after"] == "1", locked.text
        assert "wait 1 s" in locked.json()["detail"]
        assert httpx.get(f"{served.url}/v1/models", headers=right).status_code == 200   # other addresses go on
        time.sleep(1.05)
        assert guesser.get("/v1/models", headers=wrong).status_code == 401              # 6th wrong: 2 s
        assert guesser.get("/v1/models", headers=wrong).headers["retry-after"] == "2"
        time.sleep(2.05)
        assert guesser.get("/v1/models", headers=right).status_code == 200              # after the wait
        assert guesser.get("/v1/models", headers=wrong).status_code == 401              # record cleared


def test_failed_token_records_stay_bounded():
    from attumamba.server.auth import FailedTokenDelay

    now = [0.0]
    delay = FailedTokenDelay(free=2, cap_s=3.0, forget_s=60.0, max_addresses=100, clock=lambda: now[0])
    for n in range(5000):
        delay.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(delay) == 100
    for _ in range(5000):
        delay.failed("10.9.9.9")
    assert delay.wait_s("10.9.9.9") == 3                             # growing, capped
    now[0] += 61.0
    assert delay.wait_s("10.9.9.9") == 0 and len(delay) == 99        # forgotten after a quiet minute
