"""One study of a batch, as a self-contained task that runs in this process, a worker process
or a Ray worker alike.

The task reads its inputs, segments, analyses the lesions and renders every per-study file into
a private temporary folder, then returns the files' bytes: the driver alone writes into the
output folder, atomically, so a killed worker never leaves half a study behind and a Ray
cluster needs no shared output storage.
"""

from __future__ import annotations

import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import CancelledError, InputError
from ..io.dicom_sr import SEG_FILE, SR_FILE
from ..io.study_types import Study

Progress = Callable[[float, str], None]

SEG_NRRD_NAME = "lesions.seg.nrrd"
DICOM_SEG_NAME, DICOM_SR_NAME = SEG_FILE, SR_FILE  # lesions_seg.dcm, lesions_sr.dcm
MIP_NAME = "mip.png"


@dataclass(frozen=True)
class BatchSettings:
    """What every study of a run is segmented with (picklable: it travels to workers)."""

    model: str | None = None             # installed name or package path; None: the default model
    device: str = "auto"
    tta: bool = False
    reference: str = "ct"
    min_volume_ml: float = 0.0
    min_suv_max: float | None = None
    threads: int | None = None           # torch CPU threads in the process running the task

    def options(self) -> dict:
        return {"reference": self.reference, "min_volume_ml": self.min_volume_ml, "min_suv_max": self.min_suv_max}


@dataclass
class StudyOutcome:
    """What a task sends back: the files of a finished study, or why it failed."""

    study_id: str
    ok: bool
    files: dict[str, bytes] = field(default_factory=dict)
    totals: dict = field(default_factory=dict)
    model: str = ""
    seconds: float = 0.0
    error: str = ""                      # one line for the user
    detail: str = ""                     # the traceback of an unexpected failure, for the log


def segment_study(study: Study, settings: BatchSettings, progress: Progress | None = None,
                  should_cancel: Callable[[], bool] | None = None) -> StudyOutcome:
    """Segment ``study``; a bad study gives a failed outcome, only cancellation raises."""
    started = time.perf_counter()
    report = progress or (lambda fraction, stage: None)
    try:
        outcome = _segment(study, settings, report, should_cancel)
    except (CancelledError, KeyboardInterrupt):
        raise
    except InputError as error:
        outcome = StudyOutcome(study.study_id, ok=False, error=str(error))
    except Exception as error:  # noqa: BLE001 (one broken study must not stop the run)
        outcome = StudyOutcome(study.study_id, ok=False, error=f"{type(error).__name__}: {error}",
                               detail=traceback.format_exc())
    outcome.seconds = time.perf_counter() - started
    return outcome


def _segment(study: Study, settings: BatchSettings, report: Progress,
             should_cancel: Callable[[], bool] | None) -> StudyOutcome:
    from ..inference.loaded_models import LOADED_MODELS
    from ..inference.pipeline import SegmentOptions, check_pet_is_suv, run_study

    _use_threads(settings)
    report(0.0, "loading")
    load_started = time.perf_counter()
    ct, pet = study.load_ct(), study.load_pet()
    check_pet_is_suv(pet)
    loading = time.perf_counter() - load_started
    # the model is shared with the service's jobs, one segmentation at a time per device
    with LOADED_MODELS.using(settings.model, settings.device, settings.tta, should_cancel=should_cancel,
                             on_wait=lambda: report(0.05, "waiting for the device")) as segmenter:
        result = run_study(segmenter, ct, pet, SegmentOptions.from_dict(settings.options()),
                           progress=lambda fraction, stage: report(0.05 + 0.85 * fraction, stage),
                           should_cancel=should_cancel)
    result.timings = {"loading": loading, **result.timings}
    result.report["study"] = {"study_id": study.study_id, "kind": study.kind, "ct": str(study.ct),
                              "pet": str(study.pet), "study_uid": study.study_uid}
    report(0.9, "writing files")
    files = _render_files(study, settings, result, ct, pet)
    report(1.0, "done")
    return StudyOutcome(study.study_id, ok=True, files=files, totals=result.report["totals"],
                        model=segmenter.package.name)


def _use_threads(settings: BatchSettings) -> None:
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)


def _render_files(study: Study, settings: BatchSettings, result, ct, pet) -> dict[str, bytes]:
    """Labelmap, report, timings, .seg.nrrd, DICOM SEG and SR (DICOM CT, CT grid) and the MIP, as bytes."""
    from ..inference.pipeline import write_outputs
    from ..io import write_seg_nrrd
    from ..io.dicom_sr import write_dicom_seg_and_sr
    from ..viz import render_pet_ct_mip

    with tempfile.TemporaryDirectory(prefix="attumamba-study-") as temporary:
        folder = Path(temporary)
        write_outputs(result, folder)
        write_seg_nrrd(result.instances, folder / SEG_NRRD_NAME)
        if study.kind == "dicom" and settings.reference == "ct":  # SEG + SR: none for a study without lesions
            write_dicom_seg_and_sr(result.instances, result.report, study.ct, folder, ct_series_uid=study.ct_series_uid,
                                   pet=study.pet, pet_series_uid=study.pet_series_uid,
                                   model_name=result.report.get("model", ""))
        totals = result.report["totals"]
        render_pet_ct_mip(ct, pet, folder / MIP_NAME, labels=result.instances,
                          title=f"{study.study_id}: {totals['n_lesions']} lesions, MTV {totals['mtv_ml']:.1f} mL")
        return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


def outcome_record(outcome: StudyOutcome, study: Study) -> dict:
    """The JSON record kept beside a study's files (or in ``failed/``).

    ``inputs``: what the results are made from (paths, UIDs, content fingerprint), what a resume
    compares with the study an id stands for; ``outputs``: each file's size, so a resume also
    notices a file that is missing or cut short.
    """
    record = {k: v for k, v in asdict(outcome).items() if k not in ("files", "detail")}
    record["inputs"] = study.inputs()
    record["outputs"] = {name: len(data) for name, data in outcome.files.items()}
    return record
