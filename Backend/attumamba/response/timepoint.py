"""One time point of a response assessment: CT, PET, the lesion labelmap and its report.

What ``compare --baseline``/``--follow-up`` accept:
- a result folder of ``segment`` or a batch study (``lesions.nii.gz`` beside a ``study.json``
  naming its CT and PET): its labelmap, as the reader may have edited it, is re-measured;
- a study (a DICOM folder or a CT/PET pair that :func:`find_studies` finds exactly one of): it is
  segmented with the chosen model first;
- either of them with an explicit labelmap (``labels``), e.g. a reader's own segmentation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from ..errors import InputError
from ..inference.pipeline import LABELMAP_NAME, check_pet_is_suv
from ..io import find_studies, load_volume, resample_to
from ..io.resample import same_grid
from ..io.study_types import Study
from ..lesions import analyze_instances

RECORD_NAME = "study.json"


@dataclass
class TimePoint:
    name: str                     # "baseline" or "follow-up"
    ct: sitk.Image
    pet: sitk.Image               # SUVbw
    labels: sitk.Image            # instance labelmap (CT grid), numbered as ``report``
    report: dict
    source: str                   # where it came from, for the response record
    segmented_by: str | None = None


def load_time_point(name: str, path: str | Path, *, labels: str | Path | None = None, model: str | None = None,
                    device: str = "auto", patient: tuple | None = None, progress=None) -> TimePoint:
    """A time point from a result folder, a study, or a study plus its labelmap (see the module docstring)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"the {name} {path} does not exist; give a study folder or a segment result folder")
    record = path / RECORD_NAME
    if labels is None and (path / LABELMAP_NAME).is_file() and record.is_file():
        ct, pet = _inputs_of(name, record)
        labelmap = sitk.ReadImage(str(path / LABELMAP_NAME))
        return measured(name, ct, pet, labelmap, f"result folder {path}", patient)
    study = _one_study(name, path)
    ct, pet = study.load_ct(), study.load_pet()
    check_pet_is_suv(pet)
    if labels is not None:
        return measured(name, ct, pet, load_volume(labels), f"study {path} with labelmap {labels}", patient)
    from ..inference import Segmenter, resolve_model, run_study

    package = resolve_model(model)
    result = run_study(Segmenter(package, device), ct, pet, progress=progress)
    return measured(name, ct, pet, result.instances, f"study {path}, segmented by {package.name}", patient,
                     segmented_by=package.name)


def measured(name, ct, pet, labelmap, source, patient=None, segmented_by=None) -> TimePoint:
    """Re-measure ``labelmap`` (onto the CT grid first when it lies on another) with CT and PET."""
    if not same_grid(labelmap, ct):
        labelmap = resample_to(labelmap, ct, kind="label")
    instances, report = analyze_instances(labelmap, ct, pet, patient=patient)
    return TimePoint(name, ct, pet, instances, report, source, segmented_by)


def _inputs_of(name: str, record: Path) -> tuple[sitk.Image, sitk.Image]:
    try:
        inputs = json.loads(record.read_text()).get("inputs") or {}
    except (OSError, json.JSONDecodeError):
        raise InputError(f"the {name}'s {record} cannot be read; segment the study again") from None
    if not inputs.get("ct") or not inputs.get("pet"):
        raise InputError(f"the {name}'s {record} does not name its CT and PET; give the study folder instead")
    ct = load_volume(inputs["ct"], series_uid=inputs.get("ct_series_uid"))
    pet = load_volume(inputs["pet"], series_uid=inputs.get("pet_series_uid"))
    check_pet_is_suv(pet)
    return ct, pet


def _one_study(name: str, path: Path) -> Study:
    scan = find_studies(path)
    if len(scan) != 1:
        found = ", ".join(s.study_id for s in scan) or "none"
        raise InputError(f"the {name} {path} must hold exactly one CT/PET study (found {len(scan)}: {found}); "
                         "give the folder of one study")
    return scan.studies[0]
