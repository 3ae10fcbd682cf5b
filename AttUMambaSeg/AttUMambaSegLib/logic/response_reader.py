"""What the reader changes in an assessment shown in the scene: the choices read back from the
nodes (targets, reference ROIs dragged), where to look at a lesion group in both studies, and a
watch that says when the reader's changes have settled enough to assess again.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import slicer
import vtk

from .geometry import ras_to_lps
from .lesion_view import lesion_focus_ras
from .response_scene import KINDS, MOVED_MM, READER_PLACED_ATTRIBUTE, SET_CENTRE_ATTRIBUTE, WHEN, ResponseResult


def reader_choices(result: ResponseResult, targets: list[int] | None = None,
                   lesion_info: dict[int, dict] | None = None) -> dict:
    """The reader's choices for the next assessment: ``targets`` (baseline ids; None keeps the last
    choice), ``lesion_info`` (baseline id -> organ and nodal status; None keeps the last), and every
    reference ROI the reader dragged or placed, as its centre in LPS."""
    reader = dict(result.reader)
    if targets is not None:
        reader["targets"] = sorted(int(t) for t in targets)
    if lesion_info is not None:
        reader["lesion_info"] = {str(int(k)): {"organ": v.get("organ") or None, "nodal": bool(v.get("nodal"))}
                                 for k, v in lesion_info.items()}
    for kind in KINDS:
        positions = dict(reader.get(kind) or {})
        for when in WHEN:
            roi = result.references.get((kind, when))
            if roi is None or roi.GetScene() is None:
                continue
            centre = [0.0, 0.0, 0.0]
            roi.GetCenter(centre)
            was = json.loads(roi.GetAttribute(SET_CENTRE_ATTRIBUTE) or "null")
            if roi.GetAttribute(READER_PLACED_ATTRIBUTE) or was is None or math.dist(centre, was) > MOVED_MM:
                positions[when] = [round(c, 3) for c in ras_to_lps(centre)]
        if positions:
            reader[kind] = positions
    return reader


def group_focus(result: ResponseResult, group_id: str) -> tuple[float, float, float]:
    """The world RAS point to centre the views on for a lesion group: its first baseline lesion, or
    (a new lesion) its first follow-up lesion carried through the registration onto the baseline."""
    row = next((r for r in result.response.get("lesions", []) if str(r["group"]) == str(group_id)), None)
    if row is None:
        raise KeyError(f"lesion group {group_id} is not in the response; compare again")
    when, ids = ("baseline", row["baseline_ids"]) if row["baseline_ids"] else ("follow_up", row["follow_up_ids"])
    point = lesion_focus_ras(result.reports[when], int(ids[0]))
    return to_world(result.segmentations[when], point)


def to_world(node, point_ras) -> tuple[float, float, float]:
    """A point in ``node``'s own RAS coordinates, through its parent transforms, in world RAS."""
    parent = node.GetParentTransformNode() if node is not None else None
    if parent is None:
        return tuple(float(c) for c in point_ras)
    transform = vtk.vtkGeneralTransform()
    parent.GetTransformToWorld(transform)
    return tuple(float(c) for c in transform.TransformPoint([float(c) for c in point_ras]))


def reference_centres_lps(result: ResponseResult) -> dict[tuple[str, str], tuple[float, float, float]]:
    """Each reference ROI's centre in its own time point's LPS (for scripts and tests)."""
    found = {}
    for key, roi in result.references.items():
        centre = [0.0, 0.0, 0.0]
        roi.GetCenter(centre)
        found[key] = tuple(np.round(ras_to_lps(centre), 6))
    return found


class ReaderWatch:
    """Notices the reader's changes to an assessment's inputs (a reference ROI dragged, a segment
    edited, a target toggled through :meth:`touch`) and says when they have settled for ``quiet_s``,
    so one re-assessment follows a drag rather than one per mouse move."""

    def __init__(self, result: ResponseResult, quiet_s: float = 1.0, on_change=None):
        self.quiet_s, self.on_change, self.changed_at = quiet_s, on_change, None
        self._observed = []
        for roi in result.references.values():
            self._observe(roi, vtk.vtkCommand.ModifiedEvent)
        edits = [getattr(slicer.vtkSegmentation, name) for name in ("SegmentAdded", "SegmentRemoved", "SegmentModified",
                                                                    "SourceRepresentationModified",  # painted voxels
                                                                    "MasterRepresentationModified")  # Slicer < 5.4
                 if hasattr(slicer.vtkSegmentation, name)]
        for node in result.segmentations.values():
            for event in edits:
                self._observe(node, event)

    def _observe(self, node, event) -> None:
        if node is not None:
            self._observed.append((node, node.AddObserver(event, lambda *_: self.touch())))

    def touch(self) -> None:
        self.changed_at = time.monotonic()
        if self.on_change is not None:
            self.on_change()

    def due(self) -> bool:
        """True once after changes that have been quiet for ``quiet_s``."""
        if self.changed_at is None or time.monotonic() - self.changed_at < self.quiet_s:
            return False
        self.changed_at = None
        return True

    def stop(self) -> None:
        for node, tag in self._observed:
            node.RemoveObserver(tag)
        self._observed.clear()
        self.changed_at = None
