"""Uploaded studies kept in memory for segmenting and re-measuring, evicted by size and age.

Reading the uploaded files safely is :mod:`.uploads`' job.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from ..errors import InputError


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 2 << 30        # per file
    max_voxels: int = 1024 * 1024 * 1024   # per volume (e.g. CT 512×512×4000)
    max_studies_bytes: int = 8 << 30       # all studies kept in memory
    study_ttl_s: float = 4 * 3600.0        # unused studies are dropped after this


@dataclass
class Study:
    study_id: str
    ct: sitk.Image
    pet: sitk.Image
    meta: dict = field(default_factory=dict)
    last_used: float = field(default_factory=time.monotonic)

    @property
    def nbytes(self) -> int:
        return sum(_image_bytes(image) for image in (self.ct, self.pet))

    def describe(self) -> dict:
        return {"study_id": self.study_id, "ct": _geometry(self.ct), "pet": _geometry(self.pet), "meta": self.meta}


class StudyStore:
    """Thread-safe studies by id, least recently used first out when over the byte cap or too old."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self._studies: OrderedDict[str, Study] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, ct: sitk.Image, pet: sitk.Image, meta: dict | None = None) -> Study:
        study = Study(uuid.uuid4().hex, ct, pet, dict(meta or {}))
        if study.nbytes > self.limits.max_studies_bytes:
            raise InputError(f"the study needs {study.nbytes >> 20} MiB, more than the store's "
                             f"{self.limits.max_studies_bytes >> 20} MiB")
        with self._lock:
            self._studies[study.study_id] = study
            self._evict(keep=study.study_id)
        return study

    def get(self, study_id: str) -> Study | None:
        with self._lock:
            self._evict()
            study = self._studies.get(study_id)
            if study is not None:
                study.last_used = time.monotonic()
                self._studies.move_to_end(study_id)
            return study

    def clear(self) -> None:
        with self._lock:
            self._studies.clear()

    def __len__(self) -> int:
        return len(self._studies)

    def _evict(self, keep: str | None = None) -> None:
        now = time.monotonic()
        for study_id in [k for k, s in self._studies.items() if now - s.last_used > self.limits.study_ttl_s]:
            if study_id != keep:
                del self._studies[study_id]
        total = sum(s.nbytes for s in self._studies.values())
        for study_id in list(self._studies):
            if total <= self.limits.max_studies_bytes:
                break
            if study_id != keep:
                total -= self._studies.pop(study_id).nbytes


def _image_bytes(image: sitk.Image) -> int:
    return int(np.prod(image.GetSize(), dtype=np.int64)) * image.GetSizeOfPixelComponent() * \
        image.GetNumberOfComponentsPerPixel()


def _geometry(image: sitk.Image) -> dict:
    return {"size": list(image.GetSize()), "spacing": list(image.GetSpacing()), "origin": list(image.GetOrigin()),
            "direction": list(image.GetDirection())}
