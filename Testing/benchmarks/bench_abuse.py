"""The HTTP service under abuse: fuzzed requests against a real ``attumamba-seg serve`` on loopback,
then a normal segmentation job, beside the same job on a fresh service that saw no abuse.

    python Testing/benchmarks/bench_abuse.py [--requests 1000] [--time-limit 600] [--seed 15]

Bounded in count and time, loopback only. The abuse: random bytes, NIfTI/NRRD/MetaImage headers
that lie about their size, type, spacing or data file, detached headers naming a server file,
a compressed bomb, huge bodies without a token (streamed until the server stops them), bad
JSON, unknown ids, wrong tokens and wrong Host headers, hostile label values for ``measure``,
batch requests with bad folders. Printed: requests by outcome, 5xx (must be 0), connection
failures (the server must survive), the server's peak RSS, files left in its private temporary
folder (must be 0), and the normal job's time against the run without abuse.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).parent))
from abuse_payloads import Payloads, secret_file, small_volume_bytes  # noqa: E402

STUDY_SEED = 4243          # never used in training or other benchmarks
BIG_BODY_BYTES = 64 << 20  # sent at most per huge-body request (the header claims far more)


class Service:
    """``attumamba-seg serve`` in a child process with a private temporary folder."""

    def __init__(self, workdir: Path, threads: int):
        self.tmp = workdir / "server-tmp"
        self.tmp.mkdir(parents=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        token_file = workdir / "token"
        env = {**os.environ, "TMPDIR": str(self.tmp), "OMP_NUM_THREADS": str(threads)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "attumamba.cli", "serve", "--port", str(self.port), "--device", "cpu",
             "--token-file", str(token_file)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while not (token_file.is_file() and self._answers()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the service did not start")
            time.sleep(0.2)
        self.token = token_file.read_text().strip()

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/v1/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def client(self, token: str | None = "") -> httpx.Client:
        token = self.token if token == "" else token
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)

    def peak_rss_gb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024 ** 2

    def leftovers(self) -> list[str]:
        return sorted(str(p.relative_to(self.tmp)) for p in self.tmp.rglob("*"))

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def polite(call, *args, **kwargs) -> httpx.Response:
    """A request of the normal client, waiting out 429/503 answers as their Retry-After says."""
    for _ in range(60):
        response = call(*args, **kwargs)
        if response.status_code not in (429, 503):
            return response
        time.sleep(min(10.0, float(response.headers.get("retry-after", "1"))))
    return response


def normal_job(service: Service, ct: Path, pet: Path) -> dict:
    """Upload, segment with the default model, download: what the Slicer module does."""
    with service.client() as client:
        started = time.perf_counter()
        with ct.open("rb") as ct_file, pet.open("rb") as pet_file:
            study = polite(client.post, "/v1/studies",
                           files={"ct": (ct.name, ct_file), "pet": (pet.name, pet_file)}).json()
        job = polite(client.post, "/v1/jobs", json={"study_id": study["study_id"]}).json()
        while (status := polite(client.get, f"/v1/jobs/{job['job_id']}").json())["state"] in ("queued", "running"):
            time.sleep(0.2)
        labelmap = polite(client.get, f"/v1/jobs/{job['job_id']}/labelmap")
        return {"state": status["state"], "seconds": time.perf_counter() - started,
                "labelmap_ok": labelmap.status_code == 200, "message": status["message"]}


def huge_body(service: Service, path: str, with_token: bool) -> str:
    """A POST whose header claims 8 GiB, streamed until the server stops reading or answers."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{service.port}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {8 << 30}\r\n")
    if with_token:
        head += f"Authorization: Bearer {service.token}\r\n"
    chunk, sent = os.urandom(1 << 20), 0
    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as connection:
        connection.sendall((head + "\r\n").encode())
        try:
            while sent < BIG_BODY_BYTES:
                connection.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server closed the connection: the cap worked
        connection.settimeout(10)
        try:
            answer = connection.recv(64).decode(errors="replace")
        except OSError:
            answer = ""
    return answer.split(" ")[1] if answer.startswith("HTTP/") else "closed"


def abuse(service: Service, requests: int, time_limit: float, seed: int, workdir: Path, ct: Path, pet: Path) -> Counter:
    """Send ``requests`` hostile requests (or as many as fit in ``time_limit``); count the outcomes."""
    rng = random.Random(seed)
    payloads = Payloads(seed, secret_file(workdir))
    with service.client() as client, ct.open("rb") as ct_file, pet.open("rb") as pet_file:
        study_id = polite(client.post, "/v1/studies",
                          files={"ct": (ct.name, ct_file), "pet": (pet.name, pet_file)}).json()["study_id"]
    reference = sitk.ReadImage(str(ct))
    good = small_volume_bytes(".nrrd")
    outcomes: Counter = Counter()
    deadline = time.monotonic() + time_limit
    with service.client() as client, service.client(None) as anonymous, service.client("x" * 43) as impostor:
        for _ in range(requests):
            if time.monotonic() > deadline:
                outcomes["not sent (time limit)"] += requests - outcomes.total()
                break
            kind = rng.choice(("upload", "upload", "upload", "measure", "measure", "json", "unknown", "no token",
                               "huge body", "host", "batch"))
            try:
                status = str(_one(kind, rng, client, anonymous, impostor, payloads, reference, good, study_id,
                                  service))
            except httpx.HTTPError as error:
                status = f"connection failure ({type(error).__name__})"
            outcomes[f"{kind}: {status}"] += 1
    return outcomes


def _one(kind, rng, client, anonymous, impostor, payloads, reference, good, study_id, service):
    if kind == "upload":
        label, name, data = payloads.volume()
        files = {"ct": (name, data), "pet": ("pet.nrrd", good)} if rng.random() < 0.5 else \
            {"ct": ("ct.nrrd", good), "pet": (name, data)}
        return client.post("/v1/studies", files=files).status_code
    if kind == "measure":
        label, name, data = payloads.labelmap(reference)
        return client.post(f"/v1/studies/{study_id}/measure", files={"labelmap": (name, data)}).status_code
    if kind == "json":
        path = rng.choice(("/v1/jobs", "/v1/batches"))
        return client.post(path, content=payloads.json_body(), headers={"Content-Type": "application/json"}).status_code
    if kind == "unknown":
        some = rng.choice((uuid.uuid4().hex, "..%2F..%2Fetc", "x" * 300, "%00", "-1"))
        method, path = rng.choice((("GET", f"/v1/jobs/{some}"), ("DELETE", f"/v1/jobs/{some}"),
                                   ("GET", f"/v1/jobs/{some}/labelmap"), ("GET", f"/v1/jobs/{some}/lesions"),
                                   ("GET", f"/v1/studies/{some}/volumes/ct"),
                                   ("GET", f"/v1/studies/{study_id}/volumes/{some}"),
                                   ("GET", f"/v1/batches/{some}"), ("POST", f"/v1/batches/{some}/studies/{some}/open"),
                                   ("GET", f"/v1/{some}")))
        return client.request(method, path).status_code
    if kind == "no token":
        who = rng.choice((anonymous, impostor))
        if rng.random() < 0.5:
            return who.post("/v1/studies", files={"ct": ("ct.nrrd", good), "pet": ("pet.nrrd", good)}).status_code
        return who.post("/v1/jobs", content=payloads.json_body()).status_code
    if kind == "huge body":
        return huge_body(service, rng.choice(("/v1/studies", "/v1/jobs", f"/v1/studies/{study_id}/measure")),
                         with_token=rng.random() < 0.3)
    if kind == "host":
        path = rng.choice(("/docs", "/openapi.json", "/v1/health", "/v1/models"))
        host = rng.choice(("evil.example", "attacker.test:80", "127.0.0.1.nip.io", ""))
        return client.get(path, headers={"Host": host}).status_code
    folder = rng.choice(("relative/path", "/nonexistent/folder", str(Path(__file__)), ""))
    body = {"input_dir": folder, "output_dir": rng.choice(("/nonexistent/out", "out", folder))}
    return client.post("/v1/batches", json=body).status_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds of abuse at most")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "attumamba-bench-abuse-study")
    args = parser.parse_args()

    from attumamba.synth import synthesize

    if not (args.cache / "synth_0000" / "SUV.nii.gz").is_file():
        synthesize(args.cache, 1, seed=STUDY_SEED, profile="compact", fmt="nifti")
    ct, pet = args.cache / "synth_0000" / "CT.nii.gz", args.cache / "synth_0000" / "SUV.nii.gz"
    workdir = Path(tempfile.mkdtemp(prefix="attumamba-bench-abuse-"))
    try:
        calm = Service(workdir / "calm", args.threads)
        try:
            baseline = normal_job(calm, ct, pet)
        finally:
            calm.stop()
        service = Service(workdir / "abused", args.threads)
        try:
            started = time.perf_counter()
            outcomes = abuse(service, args.requests, args.time_limit, args.seed, workdir, ct, pet)
            abuse_s = time.perf_counter() - started
            alive_after_abuse = service.alive()
            after = normal_job(service, ct, pet) if alive_after_abuse else {"state": "server dead", "seconds": 0.0}
            time.sleep(1.0)
            leftovers, peak = service.leftovers(), service.peak_rss_gb()
        finally:
            service.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(outcomes, abuse_s, alive_after_abuse, baseline, after, leftovers, peak)


def report(outcomes: Counter, abuse_s: float, alive: bool, baseline: dict, after: dict, leftovers: list[str],
           peak: float) -> None:
    sent = sum(n for key, n in outcomes.items() if "not sent" not in key)
    server_errors = sum(n for key, n in outcomes.items() if key.split(": ")[-1].startswith("5"))
    failures = sum(n for key, n in outcomes.items() if "connection failure" in key)
    print("\n| outcome | requests |\n|---|---|")
    for key, n in sorted(outcomes.items()):
        print(f"| {key} | {n} |")
    print(f"\n| measure | value |\n|---|---|\n| hostile requests sent | {sent} in {abuse_s:.0f} s |"
          f"\n| 5xx answers (must be 0) | {server_errors} |\n| connection failures | {failures} |"
          f"\n| server alive after the abuse | {alive} |\n| server peak RSS | {peak:.2f} GB |"
          f"\n| files left in the server's temp folder (must be 0) | {len(leftovers)} |"
          f"\n| normal job, fresh service | {baseline['state']}, {baseline['seconds']:.1f} s |"
          f"\n| normal job after the abuse | {after['state']}, {after['seconds']:.1f} s |"
          f"\n| ratio after / fresh | {after['seconds'] / max(baseline['seconds'], 1e-9):.2f} |")
    if leftovers:
        print("leftovers:", *leftovers[:20], sep="\n  ")


if __name__ == "__main__":
    main()
