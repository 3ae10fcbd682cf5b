"""The backend's HTTP API from Slicer, with the standard library only (urllib, json).

Every call has a timeout and turns whatever goes wrong into a :class:`BackendError` whose
message says what to do: backend not running, wrong token, the backend's own ``{error, detail}``.
Uploads are streamed from disk and downloads to disk, never held whole in memory; both report
their bytes to ``on_transfer_progress``. In Slicer they run in a helper process
(:mod:`.transfers`), where Slicer's GUI thread cannot slow them down. Calls go straight to the backend
(no proxy, no redirect, verified TLS: see :mod:`.transport`), and volumes go over plain HTTP to
another computer only once the user agreed to it for that backend in this session.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from . import transport
from .forms import multipart_form


class BackendError(RuntimeError):
    """A backend call failed; the message is meant for the user."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class BackendClient:
    """One backend at ``url``; ``ca_file``: the certificate (or its CA) an https backend must present,
    for a self-signed one; by default the system's trusted CAs."""

    def __init__(self, url: str = "http://127.0.0.1:8765", token: str = "", timeout: float = 30.0,
                 ca_file: str | Path = ""):
        try:
            self.url = transport.check_url(url)
            self._opener = transport.direct_opener(ca_file)
        except transport.TransportError as error:
            raise BackendError(str(error)) from None
        self.token, self.timeout, self.ca_file = token.strip(), timeout, str(ca_file or "").strip()
        #: Called with (bytes so far, bytes in all; 0 when not known) as a file goes up or comes down.
        self.on_transfer_progress: Callable[[int, int], None] | None = None

    @classmethod
    def from_token_file(cls, url: str, token_file: str | Path, timeout: float = 30.0) -> BackendClient:
        path = Path(token_file).expanduser()
        try:
            return cls(url, path.read_text().strip(), timeout)
        except OSError as error:
            raise BackendError(f"cannot read the backend token from {path} ({error.strerror}); start the backend "
                               "first (it writes the token there) or paste the token") from None

    # --- plain HTTP to another computer ---------------------------------------------------------
    @property
    def plain_http_warning(self) -> str:
        """Why this backend's connection is unsafe for patient data ('' for https or this computer)."""
        return transport.plain_http_warning(self.url)

    def plain_http_consent_needed(self) -> str:
        """The warning to confirm before volumes go to this backend; '' when safe or already agreed."""
        return transport.CONSENT.needed(self.url)

    def consent_to_plain_http(self) -> None:
        """The user agreed to send volumes to this backend over plain HTTP (this session, this backend)."""
        transport.CONSENT.confirm(self.url)

    # --- calls -----------------------------------------------------------------------------
    def health(self) -> dict:
        return self._json("GET", "/v1/health", timeout=5.0)

    def models(self) -> list[dict]:
        return self._json("GET", "/v1/models")

    def upload_study(self, ct_file: str | Path, pet_file: str | Path, meta: dict | None = None) -> dict:
        fields = {"meta": json.dumps(meta or {})}
        return self._multipart("/v1/studies", {"ct": Path(ct_file), "pet": Path(pet_file)}, fields)

    def submit(self, study_id: str, model: str | None = None, *, device: str | None = None, tta: bool = False,
               options: dict | None = None) -> dict:
        body = {"study_id": study_id, "model": model, "device": device, "tta": tta, "options": options or {}}
        return self._json("POST", "/v1/jobs", {k: v for k, v in body.items() if v is not None})

    def job(self, job_id: str) -> dict:
        return self._json("GET", f"/v1/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict:
        return self._json("DELETE", f"/v1/jobs/{job_id}")

    def lesions(self, job_id: str) -> dict:
        return self._json("GET", f"/v1/jobs/{job_id}/lesions")

    def download_labelmap(self, job_id: str, target: str | Path) -> Path:
        return self._download(f"/v1/jobs/{job_id}/labelmap", target)

    def measure(self, study_id: str, labelmap_file: str | Path, options: dict | None = None) -> dict:
        return self._multipart(f"/v1/studies/{study_id}/measure", {"labelmap": Path(labelmap_file)},
                               {"options": json.dumps(options or {})})

    def send_labelmap(self, study_id: str, labelmap_file: str | Path) -> dict:
        """Keep a labelmap of a stored study on the backend (for responses): ``{labelmap_id, study_id, report}``."""
        return self._multipart(f"/v1/studies/{study_id}/labelmaps", {"labelmap": Path(labelmap_file)}, {})

    def submit_response(self, body: dict) -> dict:
        """Start a response assessment (``POST /v1/responses``: baseline, follow_up, reader, ...)."""
        return self._json("POST", "/v1/responses", body)

    def response(self, response_id: str) -> dict:
        return self._json("GET", f"/v1/responses/{response_id}")

    def cancel_response(self, response_id: str) -> dict:
        return self._json("DELETE", f"/v1/responses/{response_id}")

    def download_response_transform(self, response_id: str, target: str | Path) -> Path:
        """The follow-up-to-baseline registration as an ITK ``.h5`` transform file."""
        return self._download(f"/v1/responses/{response_id}/transform", target)

    def download_volume(self, study_id: str, which: str, target: str | Path) -> Path:
        """A stored study's ``ct`` (HU) or ``pet`` (SUV) as a NRRD file."""
        return self._download(f"/v1/studies/{study_id}/volumes/{which}", target)

    def export_dicom(self, study_id: str, labelmap_file: str | Path, references: dict, target: str | Path,
                     model: str = "") -> Path:
        """DICOM SEG + SR of a labelmap on a stored study (``POST /v1/studies/{id}/dicom``, ``references``: the
        CT/PET series' as :mod:`.dicom_sources` reads them): the backend's zip of both, written to ``target``."""
        form = self._form({"labelmap": Path(labelmap_file)}, {"references": json.dumps(references), "model": model})
        return self._download(f"/v1/studies/{study_id}/dicom", target, form)

    # --- sample studies (made on the backend by its synthetic generator) ------------------------
    def request_sample(self, choices: dict) -> dict:
        """Queue a synthetic study (``POST /v1/samples``: tracer, profile, seed): ``{sample_id, state, ...}``."""
        return self._json("POST", "/v1/samples", choices)

    def sample_status(self, sample_id: str) -> dict:
        """``{state, progress, stage, message}``, and once done ``study``: the stored study's ID, grids and meta."""
        return self._json("GET", f"/v1/samples/{sample_id}")

    def cancel_sample(self, sample_id: str) -> dict:
        return self._json("DELETE", f"/v1/samples/{sample_id}")

    # --- batches (folders on the backend's machine) -------------------------------------------
    def submit_batch(self, input_dir: str, output_dir: str, model: str | None = None, *, device: str | None = None,
                     tta: bool = False, resume: bool = False, options: dict | None = None) -> dict:
        body = {"input_dir": input_dir, "output_dir": output_dir, "model": model, "device": device, "tta": tta,
                "resume": resume, "options": options or {}}
        return self._json("POST", "/v1/batches", {k: v for k, v in body.items() if v is not None})

    def batch(self, batch_id: str) -> dict:
        return self._json("GET", f"/v1/batches/{batch_id}")

    def cancel_batch(self, batch_id: str) -> dict:
        return self._json("DELETE", f"/v1/batches/{batch_id}")

    def open_batch_study(self, batch_id: str, study_id: str) -> dict:
        """Load a finished study of a batch into the backend's study store: ``{study_id, ct, pet, meta, report}``."""
        path = f"/v1/batches/{batch_id}/studies/{_part(study_id)}/open"
        return self._json("POST", path, timeout=max(self.timeout, 120.0))

    def download_batch_labelmap(self, batch_id: str, study_id: str, target: str | Path) -> Path:
        return self._download(f"/v1/batches/{batch_id}/studies/{_part(study_id)}/labelmap", target)

    def wait(self, job_id: str, *, poll_s: float = 0.5, timeout_s: float = 3600.0,
             on_status=None, should_cancel=None) -> dict:
        """Poll a job until it finishes (for scripts and tests; the GUI polls with a timer)."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.job(job_id)
            if on_status is not None:
                on_status(status)
            if status["state"] in ("done", "failed", "cancelled"):
                return status
            if should_cancel is not None and should_cancel():
                self.cancel(job_id)
            if time.monotonic() > deadline:
                raise BackendError(f"job {job_id} did not finish within {timeout_s:.0f} s")
            time.sleep(poll_s)

    # --- plumbing --------------------------------------------------------------------------
    def require_private_channel(self) -> None:
        """Volumes never travel in clear text to another computer unless the user agreed."""
        warning = self.plain_http_consent_needed()
        if warning:
            raise BackendError(f"volumes not sent: {warning} Or confirm sending them over plain HTTP when "
                               "the module asks (once per backend and session).")

    def _download(self, path: str, target: str | Path, form: tuple | None = None) -> Path:
        """The answer to ``path`` into ``target`` in 1 MiB pieces; ``target`` appears only once complete.

        A GET, or with ``form`` (from :meth:`_form`) a POST of it whose answer is a file.
        """
        self.require_private_channel()
        target = Path(target)
        temporary = target.with_name(target.name + ".part")
        method, body, headers = ("GET", None, None) if form is None else ("POST", *form)
        timeout = max(self.timeout, 120.0 if form is None else 600.0)
        try:
            with self._response(method, path, body, headers, timeout) as response, \
                    temporary.open("wb") as handle:
                total, done = int(response.headers.get("Content-Length") or 0), 0
                while chunk := response.read(1 << 20):
                    handle.write(chunk)
                    done += len(chunk)
                    self._progress(done, total)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        return target

    def _json(self, method: str, path: str, body: dict | None = None, timeout: float | None = None):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        return json.loads(self._request(method, path, data, headers, timeout))

    def _multipart(self, path: str, files: dict[str, Path], fields: dict[str, str]) -> dict:
        """POST a form of ``fields`` and ``files`` (streamed from disk); the backend's JSON answer."""
        body, headers = self._form(files, fields)
        return json.loads(self._request("POST", path, body, headers, max(self.timeout, 600.0)))

    def _form(self, files: dict[str, Path], fields: dict[str, str]) -> tuple[Iterator[bytes], dict[str, str]]:
        """A multipart/form-data body that streams ``files`` from disk (with progress), and its headers."""
        self.require_private_channel()
        for name, file in files.items():
            if not file.is_file():
                raise BackendError(f"{name}: {file} is not a file")
        return multipart_form(files, fields, self._progress)

    def _progress(self, done: int, total: int) -> None:
        if self.on_transfer_progress is not None:
            self.on_transfer_progress(done, total)

    def _request(self, method: str, path: str, data=None, headers: dict | None = None,
                 timeout: float | None = None) -> bytes:
        with self._response(method, path, data, headers, timeout) as response:
            return response.read()

    @contextmanager
    def _response(self, method: str, path: str, data=None, headers: dict | None = None,
                  timeout: float | None = None) -> Iterator:
        """The backend's answer to read; what goes wrong, also while reading it, becomes a :class:`BackendError`."""
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=dict(headers or {}))
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with self._opener.open(request, timeout=timeout or self.timeout) as response:
                yield response
        except urllib.error.HTTPError as error:
            if 300 <= error.code < 400:
                raise BackendError(f"the backend at {self.url} answered with a redirect to "
                                   f"{error.headers.get('Location', '(no address)')}; redirects are never followed "
                                   "(the token would go along): type the backend's own address", error.code) from None
            raise BackendError(_http_message(error), error.code) from None
        except urllib.error.URLError as error:
            if isinstance(error.reason, ssl.SSLError):
                raise BackendError(_tls_message(self.url, error.reason)) from None
            raise BackendError(f"the backend at {self.url} is not reachable ({error.reason}); start it "
                               "(attumamba-seg serve) or check the URL") from None
        except TimeoutError:
            raise BackendError(f"the backend at {self.url} did not answer within {timeout or self.timeout:.0f} s") from None
        except ssl.SSLError as error:
            raise BackendError(_tls_message(self.url, error)) from None
        except (http.client.HTTPException, ConnectionError) as error:
            raise BackendError(f"the backend at {self.url} ended the connection without an HTTP answer ({error}); "
                               "if it serves https, type https:// in the URL") from None


def _part(text: str) -> str:
    """A study ID as one URL path segment (IDs come from file names: spaces, '#', '/' stay in it)."""
    return urllib.parse.quote(text, safe="")


def _tls_message(url: str, error: ssl.SSLError) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return (f"the certificate of the backend at {url} could not be verified ({error.verify_message}); "
                "for a backend with a self-signed certificate, choose that certificate (its --tls-cert file) or "
                "its CA as the backend's certificate file")
    return f"no TLS connection to the backend at {url} ({error.reason or error}); if it serves plain http, type http://"


def _http_message(error: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(error.read())
        detail = f"{body.get('error', 'error')}: {body.get('detail', '')}"
    except (ValueError, OSError):
        detail = error.reason
    if error.code == 401:
        return f"the backend refused the token ({detail}); use the token the backend wrote at its start"
    return f"backend error {error.code}: {detail}"
