"""Uploaded studies kept in memory for segmenting and re-measuring, within the service's byte
budget (:mod:`.holdings`, shared with job results) and pinned while a job needs them.

Reading the uploaded files safely is :mod:`.uploads`' job.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from .holdings import Holdings, Refusal


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 2 << 30        # per file
    max_voxels: int = 1024 * 1024 * 1024   # per volume (e.g. CT 512×512×4000)
    max_decoded_bytes: int = 2 << 30       # per volume once decoded, checked from its header (see uploads.py)
    max_studies_bytes: int = 8 << 30       # everything held in memory: studies and job results
    study_ttl_s: float = 4 * 3600.0        # unused studies and results are dropped after this
    max_queued_jobs: int = 16              # per device; more are refused with 429 and Retry-After


@dataclass
class Study:
    study_id: str
    ct: sitk.Image
    pet: sitk.Image
    meta: dict = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(_image_bytes(image) for image in (self.ct, self.pet))

    def describe(self) -> dict:
        return {"study_id": self.study_id, "ct": _geometry(self.ct), "pet": _geometry(self.pet), "meta": self.meta}


class StudyStore:
    """Studies by id in the service's :class:`.holdings.Holdings` (its own when none is given)."""

    def __init__(self, limits: Limits, holdings: Holdings | None = None):
        self.limits = limits
        self.holdings = holdings or Holdings(limits.max_studies_bytes, limits.study_ttl_s)

    def add(self, ct: sitk.Image, pet: sitk.Image, meta: dict | None = None) -> Study:
        study = Study(uuid.uuid4().hex, ct, pet, dict(meta or {}))
        self.holdings.put(("study", study.study_id), study, study.nbytes, "the study")
        return study

    def get(self, study_id: str) -> Study | None:
        return self.holdings.get(("study", study_id))

    def require(self, study_id: str, *, pin: bool = False) -> Study:
        """The study (pinned until :meth:`unpin` if asked), or a 404 that says it expired or never was."""
        study = self.holdings.get(("study", study_id), pin=pin)
        if study is not None:
            return study
        reason = self.holdings.why_gone(("study", study_id))
        if reason:
            raise Refusal(404, "study expired", f"study {study_id} is no longer held: {reason}; upload it again")
        raise Refusal(404, "unknown study", f"no study {study_id!r} (never uploaded here, or the backend restarted "
                                            "since); upload it again")

    def unpin(self, study_id: str) -> None:
        self.holdings.unpin(("study", study_id))

    def clear(self) -> None:
        self.holdings.clear()

    def __len__(self) -> int:
        return self.holdings.count("study")


def _image_bytes(image: sitk.Image) -> int:
    return int(np.prod(image.GetSize(), dtype=np.int64)) * image.GetSizeOfPixelComponent() * \
        image.GetNumberOfComponentsPerPixel()


def _geometry(image: sitk.Image) -> dict:
    return {"size": list(image.GetSize()), "spacing": list(image.GetSpacing()), "origin": list(image.GetOrigin()),
            "direction": list(image.GetDirection())}
