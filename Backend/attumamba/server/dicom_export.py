"""``POST /v1/studies/{id}/dicom``: a DICOM SEG and SR TID 1500 of an edited labelmap, as a zip.

The Slicer module sends the labelmap (as for ``measure``) and, from Slicer's DICOM database,
the CT (and PET) series' references (:mod:`..io.dicom_references`); the backend needs no
DICOM file. The lesions are measured on the stored study exactly as ``measure`` does, so the
SR's numbers are the module's table. Files are written in a private temporary folder that is
removed once zipped.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path

import SimpleITK as sitk

from ..errors import InputError
from ..inference import SegmentOptions
from ..io.dicom_references import series_from_references
from ..io.dicom_sr import write_dicom_seg_and_sr
from ..lesions.report import analyze_instances
from .studies import Study


def parsed_json(text: str | None, what: str) -> dict:
    """A form field's JSON object ({} when absent); InputError that names the field otherwise."""
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError as error:
        raise InputError(f"{what} is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise InputError(f"{what} must be a JSON object")
    return value


def dicom_zip(study: Study, labels: sitk.Image, references: dict, options: dict, model_name: str = "") -> bytes:
    """The zip of lesions_seg.dcm and lesions_sr.dcm for ``labels`` on ``study``'s CT."""
    chosen = SegmentOptions.from_dict(options)
    ct_series, pet_series = series_from_references(references)
    instances, report = analyze_instances(labels, study.ct, study.pet, min_volume_ml=chosen.min_volume_ml,
                                          min_suv_max=chosen.min_suv_max)
    with tempfile.TemporaryDirectory(prefix="attumamba-dicom-") as temporary:
        written = write_dicom_seg_and_sr(instances, report, ct_series, Path(temporary), pet=pet_series,
                                         model_name=model_name)
        if written is None:
            raise InputError("the labelmap holds no lesion: a DICOM SEG needs at least one segment, so there is "
                             "nothing to export")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in written:
                archive.write(path, path.name)
    return buffer.getvalue()
