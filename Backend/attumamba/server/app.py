"""The HTTP API of DESIGN.md §2 (``/v1``) on FastAPI.

Every request passes :mod:`.gate` first (Host, bearer token, body caps, upload slots) before any
body is read; every call but ``/v1/health`` (and the API docs) needs the token. Everything a
caller can get wrong is a JSON ``{error, detail}`` with a 4xx status; an unexpected failure is a
500 with no traceback (that goes to the server log). Blocking work (reading uploads, lesion
analysis) runs in FastAPI's thread pool, segmentation in the job queue's workers, so the API
stays responsive.
"""

from __future__ import annotations

import json
import logging
import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import SimpleITK as sitk
from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, model_validator
from starlette.exceptions import HTTPException

from .. import __version__
from ..batch import BatchSettings
from ..batch.outputs import BatchFolder
from ..errors import InputError
from ..response.command import reader_from_dict
from ..inference import SegmentOptions, list_models, resolve_model
from ..inference.extraction import remove_dead_leftovers
from ..inference.loaded_models import LOADED_MODELS, LoadedModels
from ..inference.model_grid import check_model_grid
from ..inference.pipeline import LABELMAP_NAME
from ..lesions import analyze
from .auth import UNAUTHORISED_DETAIL, token_matches
from .batches import BatchRuns
from .dicom_export import dicom_zip, parsed_json
from .responses import ResponseRuns
from .samples import SampleRuns, sample_routes
from .gate import RequestGate
from .health import runtime_facts
from .holdings import Refusal
from .jobs import JobQueue
from .labelmaps import LabelmapStore
from .studies import Limits, StudyStore
from .uploads import check_study, image_bytes, read_upload, transform_bytes

log = logging.getLogger("attumamba.server")


@dataclass
class ServerState:
    token: str
    limits: Limits = field(default_factory=Limits)
    devices: tuple[str, ...] = ("cpu",)
    segmenters: LoadedModels = field(default_factory=lambda: LOADED_MODELS)  # shared with batch runs
    allowed_hosts: tuple[str, ...] = ()    # Host names besides the loopback ones (see gate.py)
    upload_slots: int = 2                  # uploads received at a time
    instance: str = field(default_factory=lambda: secrets.token_hex(16))   # named by /v1/health


class JobRequest(BaseModel):
    study_id: str
    model: str | None = None
    device: str | None = None
    tta: bool = False
    options: dict = Field(default_factory=dict)


class TimePointRequest(BaseModel):
    study_id: str
    job_id: str | None = None              # a finished job of that study: its labelmap is the lesions
    labelmap_id: str | None = None         # or a labelmap sent for that study (POST .../labelmaps)

    @model_validator(mode="after")
    def one_source(self):
        if (self.job_id is None) == (self.labelmap_id is None):
            raise ValueError("give exactly one of job_id and labelmap_id")
        return self

    def source(self) -> tuple[str, str]:
        return ("job", self.job_id) if self.job_id is not None else ("labelmap", self.labelmap_id)


class ResponseRequest(BaseModel):
    baseline: TimePointRequest
    follow_up: TimePointRequest
    reader: dict = Field(default_factory=dict)   # the keys of ``compare --reader``
    deformable: bool = True
    reuse_registration: str | None = None  # a finished response of the same studies: skip registering again


class BatchRequest(BaseModel):
    input_dir: str                         # absolute paths on the backend's machine
    output_dir: str
    model: str | None = None
    device: str | None = None
    tta: bool = False
    resume: bool = False
    options: dict = Field(default_factory=dict)


class ApiError(HTTPException):
    def __init__(self, status: int, error: str, detail: str):
        super().__init__(status, detail)
        self.error = error


def create_app(state: ServerState) -> FastAPI:
    studies = StudyStore(state.limits)
    labelmaps = LabelmapStore(studies.holdings)
    samples = SampleRuns(studies)
    jobs: JobQueue | None = None
    batches: BatchRuns | None = None
    responses: ResponseRuns | None = None
    facts: dict = {}    # what /v1/health reports about the machine, found once at start

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        nonlocal jobs, batches, responses
        jobs, batches = JobQueue(state.segmenters, studies, state.devices), BatchRuns()
        responses = ResponseRuns(studies, jobs, labelmaps)
        await run_in_threadpool(remove_dead_leftovers)  # model zips unpacked by processes that died
        facts.update(await run_in_threadpool(runtime_facts, state.devices))
        yield
        samples.shutdown()
        responses.shutdown()
        batches.shutdown()
        jobs.shutdown()
        studies.clear()

    app = FastAPI(title="AttUMambaSeg backend", version=__version__, lifespan=lifespan,
                  description="Whole-body PET/CT lesion segmentation with Mamba U-Nets (DESIGN.md §2).")
    app.add_middleware(RequestGate, token=state.token, max_upload_bytes=state.limits.max_upload_bytes,
                       allowed_hosts=state.allowed_hosts, upload_slots=state.upload_slots)

    def authorised(request: Request) -> None:
        if not token_matches(request.headers.get("authorization"), state.token):
            raise ApiError(401, "unauthorised", UNAUTHORISED_DETAIL)

    app.include_router(sample_routes(samples, authorised))  # POST/GET/DELETE /v1/samples (samples.py)

    def study_or_404(study_id: str):
        return studies.require(study_id)  # 404 "study expired" or "unknown study", both "upload it again"

    def job_or_404(job_id: str):
        job = jobs.get(job_id)
        if job is None:
            raise ApiError(404, "unknown job", f"no job {job_id!r}")
        return job

    def response_or_404(response_id: str):
        run = responses.get(response_id)
        if run is None:
            raise ApiError(404, "unknown response", f"no response assessment {response_id!r}")
        return run

    def batch_or_404(batch_id: str):
        run = batches.get(batch_id)
        if run is None:
            raise ApiError(404, "unknown batch", f"no batch {batch_id!r}")
        return run

    def finished_batch_study(batch_id: str, study_id: str) -> Path:
        run = batch_or_404(batch_id)
        status = run.studies.get(study_id)
        if status is None or status.state not in ("done", "kept"):
            raise ApiError(409, "study not finished", f"study {study_id!r} of batch {batch_id} has no results "
                           f"({status.state if status else 'not in this batch'})")
        return BatchFolder(run.output_dir).study_folder(study_id)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return JSONResponse({"error": exc.error, "detail": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(Refusal)
    async def refusal(request: Request, exc: Refusal):
        headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else None
        return JSONResponse({"error": exc.error, "detail": exc.detail}, status_code=exc.status, headers=headers)

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError):
        return JSONResponse({"error": "invalid input", "detail": str(exc)}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return JSONResponse({"error": "http error", "detail": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": "invalid request", "detail": details}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal error", "detail": "the server failed; see its log"}, status_code=500)

    @app.get("/v1/health")
    def health() -> dict:
        return {"status": "ok", "version": __version__, **facts, "instance": state.instance}

    @app.get("/v1/models", dependencies=[Depends(authorised)])
    def models() -> list[dict]:
        return [model.summary() for model in list_models()]  # broken packages too, with their reason

    @app.get("/v1/status", dependencies=[Depends(authorised)])
    def status() -> dict:
        """What the service holds in memory (one budget: --study-cache-mb), its queues and loaded models."""
        return {"memory": studies.holdings.usage(), "jobs": jobs.counts(), "max_queued_jobs": jobs.max_queued,
                "models_loaded": state.segmenters.describe()}

    @app.post("/v1/studies", dependencies=[Depends(authorised)])
    async def upload_study(ct: UploadFile = File(...), pet: UploadFile = File(...), meta: str | None = Form(None)):
        try:
            details = json.loads(meta) if meta else {}
        except json.JSONDecodeError as error:
            raise ApiError(422, "invalid input", f"meta is not JSON: {error}") from None
        if not isinstance(details, dict):
            raise ApiError(422, "invalid input", "meta must be a JSON object")
        ct_image = await run_in_threadpool(read_upload, ct.file, ct.filename, "the CT", state.limits)
        pet_image = await run_in_threadpool(read_upload, pet.file, pet.filename, "the PET", state.limits)
        await run_in_threadpool(check_study, ct_image, pet_image)
        return studies.add(ct_image, pet_image, details).describe()

    @app.post("/v1/jobs", dependencies=[Depends(authorised)], status_code=202)
    def submit(request: JobRequest) -> dict:
        study = study_or_404(request.study_id)
        options = SegmentOptions.from_dict(request.options)
        device = request.device or state.devices[0]
        check_model_grid(resolve_model(request.model), study.pet)  # a header's spacing can ask for terabytes
        return jobs.submit(study.study_id, request.model, device, request.tta, options).status()

    @app.get("/v1/jobs/{job_id}", dependencies=[Depends(authorised)])
    def job_status(job_id: str) -> dict:
        return job_or_404(job_id).status()

    @app.delete("/v1/jobs/{job_id}", dependencies=[Depends(authorised)])
    def cancel(job_id: str) -> dict:
        job_or_404(job_id)
        return jobs.cancel(job_id).status()

    @app.get("/v1/jobs/{job_id}/labelmap", dependencies=[Depends(authorised)])
    async def labelmap(job_id: str) -> Response:
        return Response(jobs.result(job_id).labelmap_nrrd, media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="lesions_{job_id}.nrrd"'})

    @app.get("/v1/jobs/{job_id}/lesions", dependencies=[Depends(authorised)])
    def lesions(job_id: str) -> dict:
        return jobs.result(job_id).report

    @app.post("/v1/studies/{study_id}/measure", dependencies=[Depends(authorised)])
    async def measure(study_id: str, labelmap: UploadFile = File(...), options: str | None = Form(None)):
        try:
            chosen = SegmentOptions.from_dict(json.loads(options) if options else {})
        except json.JSONDecodeError as error:
            raise ApiError(422, "invalid input", f"options is not JSON: {error}") from None
        study = studies.require(study_id, pin=True)  # held (not evicted) while it is measured
        try:
            labels = await run_in_threadpool(read_upload, labelmap.file, labelmap.filename, "the labelmap",
                                            state.limits, labels=True)
            return await run_in_threadpool(analyze, labels, study.ct, study.pet, min_volume_ml=chosen.min_volume_ml,
                                           min_suv_max=chosen.min_suv_max)
        finally:
            studies.unpin(study_id)

    @app.post("/v1/studies/{study_id}/labelmaps", dependencies=[Depends(authorised)])
    async def store_labelmap(study_id: str, labelmap: UploadFile = File(...)):
        """Keep a labelmap of a stored study (e.g. edited segments) for response assessments; measured once."""
        study = studies.require(study_id, pin=True)
        try:
            labels = await run_in_threadpool(read_upload, labelmap.file, labelmap.filename, "the labelmap",
                                            state.limits, labels=True)
            report = await run_in_threadpool(analyze, labels, study.ct, study.pet)
            stored = labelmaps.add(study_id, await run_in_threadpool(image_bytes, labels), report)
            return {"labelmap_id": stored.labelmap_id, "study_id": study_id, "report": report}
        finally:
            studies.unpin(study_id)

    @app.post("/v1/studies/{study_id}/dicom", dependencies=[Depends(authorised)])
    async def export_dicom(study_id: str, labelmap: UploadFile = File(...), references: str = Form(...),
                           options: str | None = Form(None), model: str = Form("")) -> Response:
        """DICOM SEG + SR TID 1500 of an (edited) labelmap on the study's CT series, as a zip (dicom_export.py)."""
        given, chosen = parsed_json(references, "references"), parsed_json(options, "options")
        study = studies.require(study_id, pin=True)
        try:
            labels = await run_in_threadpool(read_upload, labelmap.file, labelmap.filename, "the labelmap",
                                            state.limits, labels=True)
            archive = await run_in_threadpool(dicom_zip, study, labels, given, chosen, model)
        finally:
            studies.unpin(study_id)
        return Response(archive, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="lesions_dicom_{study_id}.zip"'})

    @app.post("/v1/batches", dependencies=[Depends(authorised)], status_code=202)
    def submit_batch(request: BatchRequest) -> dict:
        options = SegmentOptions.from_dict(request.options)
        settings = BatchSettings(model=request.model, device=request.device or state.devices[0], tta=request.tta,
                                 reference=options.reference, min_volume_ml=options.min_volume_ml,
                                 min_suv_max=options.min_suv_max)
        return batches.submit(request.input_dir, request.output_dir, settings, request.resume).status()

    @app.get("/v1/batches/{batch_id}", dependencies=[Depends(authorised)])
    def batch_status(batch_id: str) -> dict:
        return batch_or_404(batch_id).status()

    @app.delete("/v1/batches/{batch_id}", dependencies=[Depends(authorised)])
    def cancel_batch(batch_id: str) -> dict:
        batch_or_404(batch_id)
        return batches.cancel(batch_id).status()

    @app.get("/v1/batches/{batch_id}/studies/{study_id}/labelmap", dependencies=[Depends(authorised)])
    async def batch_labelmap(batch_id: str, study_id: str) -> Response:
        path = finished_batch_study(batch_id, study_id) / LABELMAP_NAME
        labels = await run_in_threadpool(sitk.ReadImage, str(path))
        return Response(await run_in_threadpool(image_bytes, labels), media_type="application/octet-stream")

    @app.post("/v1/batches/{batch_id}/studies/{study_id}/open", dependencies=[Depends(authorised)])
    async def open_batch_study(batch_id: str, study_id: str) -> dict:
        """Load a finished study's CT and PET into the study store (for viewing and re-measuring)."""
        folder = finished_batch_study(batch_id, study_id)
        found = batches.get(batch_id).found[study_id]
        ct, pet = await run_in_threadpool(found.load_ct), await run_in_threadpool(found.load_pet)
        stored = studies.add(ct, pet, {"batch_id": batch_id, "batch_study": study_id})
        report = json.loads((folder / "lesions.json").read_text())
        return {**stored.describe(), "report": report}

    @app.post("/v1/responses", dependencies=[Depends(authorised)], status_code=202)
    def submit_response(request: ResponseRequest) -> dict:
        """Response assessment of two stored studies from their jobs' or sent labelmaps."""
        reader = reader_from_dict(request.reader)
        return responses.submit({"baseline": request.baseline.study_id, "follow_up": request.follow_up.study_id},
                                {"baseline": request.baseline.source(), "follow_up": request.follow_up.source()},
                                reader, request.deformable, request.reuse_registration).status()

    @app.get("/v1/responses/{response_id}", dependencies=[Depends(authorised)])
    def response_status(response_id: str) -> dict:
        return response_or_404(response_id).status()

    @app.get("/v1/responses/{response_id}/transform", dependencies=[Depends(authorised)])
    async def response_transform(response_id: str) -> Response:
        """The registration (baseline point -> follow-up point, LPS) as an ITK HDF5 transform file."""
        data = await run_in_threadpool(transform_bytes, responses.registration(response_id).transform)
        return Response(data, media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="follow_up_to_baseline_{response_id}.h5"'})

    @app.delete("/v1/responses/{response_id}", dependencies=[Depends(authorised)])
    def cancel_response(response_id: str) -> dict:
        response_or_404(response_id)
        return responses.cancel(response_id).status()

    @app.get("/v1/studies/{study_id}/volumes/{which}", dependencies=[Depends(authorised)])
    async def study_volume(study_id: str, which: str) -> Response:
        if which not in ("ct", "pet"):
            raise ApiError(404, "unknown volume", "ask for 'ct' or 'pet'")
        image = getattr(study_or_404(study_id), which)
        return Response(await run_in_threadpool(image_bytes, image), media_type="application/octet-stream")

    return app
