"""Labelmaps a client sent for a stored study (e.g. segments a reader edited in Slicer), kept so a
response assessment can use them instead of a job's labelmap.

They live in the service's one memory budget (:mod:`.holdings`, beside studies and job results)
and expire like them; an id that was dropped answers 410 with the reason, so the client knows
to send the labelmap again.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from .holdings import Holdings, Refusal

KIND = "labelmap"


@dataclass
class StoredLabelmap:
    labelmap_id: str
    study_id: str
    labelmap_nrrd: bytes       # as jobs hold theirs: compressed NRRD bytes
    report: dict

    @property
    def nbytes(self) -> int:
        return len(self.labelmap_nrrd) + len(json.dumps(self.report))


class LabelmapStore:
    def __init__(self, holdings: Holdings):
        self.holdings = holdings

    def add(self, study_id: str, labelmap_nrrd: bytes, report: dict) -> StoredLabelmap:
        stored = StoredLabelmap(uuid.uuid4().hex, study_id, labelmap_nrrd, report)
        self.holdings.put((KIND, stored.labelmap_id), stored, stored.nbytes, "the labelmap")
        return stored

    def require(self, labelmap_id: str) -> StoredLabelmap:
        """The labelmap, or a 404 (never sent here) / 410 (dropped, with why) that says to send it again."""
        stored = self.holdings.get((KIND, labelmap_id))
        if stored is not None:
            return stored
        reason = self.holdings.why_gone((KIND, labelmap_id))
        if reason:
            raise Refusal(410, "labelmap expired", f"labelmap {labelmap_id} is no longer held: {reason}; send it "
                                                   "again (POST /v1/studies/{study_id}/labelmaps)")
        raise Refusal(404, "unknown labelmap", f"no labelmap {labelmap_id!r} (never sent here, or the backend "
                                               "restarted since); send it again")
