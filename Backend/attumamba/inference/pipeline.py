"""One study end to end: read CT and PET, segment, analyse lesions, write the outputs.

The CLI, the HTTP service and batch runs all go through :func:`run_study`, so a study gives
the same labelmap and report whichever way it was segmented.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import SimpleITK as sitk

from ..errors import InputError
from ..io import load_volume
from ..lesions import analyze_instances, write_report
from .segmenter import Progress, Segmenter

LABELMAP_NAME = "lesions.nii.gz"


@dataclass
class SegmentOptions:
    """What a user can choose per run (the Slicer module's options and the CLI's flags)."""

    reference: str = "ct"                 # grid of the labelmap: "ct" or "pet"
    min_volume_ml: float = 0.0            # drop smaller lesions
    min_suv_max: float | None = None      # drop lesions whose SUVmax is below this

    @classmethod
    def from_dict(cls, values: dict | None) -> SegmentOptions:
        values = dict(values or {})
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise InputError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(cls.__dataclass_fields__)}")
        options = cls(**values)
        if options.reference not in ("ct", "pet"):
            raise InputError(f"reference must be 'ct' or 'pet', not {options.reference!r}")
        if not isinstance(options.min_volume_ml, (int, float)) or options.min_volume_ml < 0:
            raise InputError("min_volume_ml must be a number ≥ 0")
        if options.min_suv_max is not None and not isinstance(options.min_suv_max, (int, float)):
            raise InputError("min_suv_max must be a number or null")
        return options


@dataclass
class StudyResult:
    instances: sitk.Image                 # lesion instance labelmap on the reference grid
    report: dict
    timings: dict[str, float] = field(default_factory=dict)


#: A PET "in SUV" whose hottest voxels exceed this is activity concentration (Bq/mL) in disguise.
MAX_PLAUSIBLE_SUV = 500.0


def load_study(ct_path: str | Path, pet_path: str | Path) -> tuple[sitk.Image, sitk.Image]:
    """CT (HU) and PET (SUV) volumes from files or DICOM series folders."""
    ct, pet = load_volume(ct_path), load_volume(pet_path)
    check_pet_is_suv(pet)
    return ct, pet


def check_pet_is_suv(pet: sitk.Image) -> None:
    hottest = float(sitk.GetArrayViewFromImage(pet).max(initial=0.0))
    if hottest > MAX_PLAUSIBLE_SUV:
        raise InputError(f"the PET reaches {hottest:.0f}, which is not a plausible SUV: it looks like activity "
                         "concentration (Bq/mL). Give the PET DICOM series (converted to SUVbw from its headers) "
                         "or a PET volume in SUV")


def run_study(segmenter: Segmenter, ct: sitk.Image, pet: sitk.Image, options: SegmentOptions | None = None, *,
              progress: Progress | None = None, should_cancel: Callable[[], bool] | None = None) -> StudyResult:
    """Segment one loaded study and analyse its lesions."""
    options = options or SegmentOptions()
    segmentation = segmenter.segment(ct, pet, reference=options.reference, progress=progress,
                                     should_cancel=should_cancel)
    started = time.perf_counter()
    instances, report = analyze_instances(segmentation.mask, ct, pet, min_volume_ml=options.min_volume_ml,
                                          min_suv_max=options.min_suv_max)
    timings = {**segmentation.timings, "lesion_analysis": time.perf_counter() - started}
    report["model"] = segmenter.package.name
    report["options"] = {"reference": options.reference, "min_volume_ml": options.min_volume_ml,
                         "min_suv_max": options.min_suv_max, "tta": segmenter.tta}
    return StudyResult(instances, report, timings)


def write_outputs(result: StudyResult, out: Path) -> dict[str, Path]:
    """``lesions.nii.gz`` (instance labelmap), ``lesions.json``, ``lesions.csv`` and ``timings.json``."""
    out.mkdir(parents=True, exist_ok=True)
    labelmap = out / LABELMAP_NAME
    sitk.WriteImage(result.instances, str(labelmap), useCompression=True)
    json_path, csv_path = write_report(result.report, out)
    timings = out / "timings.json"
    timings.write_text(json.dumps(result.timings, indent=2))
    return {"labelmap": labelmap, "json": json_path, "csv": csv_path, "timings": timings}
