"""A backend result as MRML nodes: lesion segments, RECIST lines and a lesion table, linked together.

The segmentation node is the result's handle: it references its table, its axis lines and
its CT/PET, and carries the study ID and the latest report, so that re-measuring and export
work from the node alone (also after the scene is saved and loaded again).

Never lose user work: each run makes a new segmentation unless ``replace`` names one, and a
call that fails half-way removes every node it created (and puts back replaced segments).
Never disturb the scene: a build or refresh is one batch of the scene that leaves the user's
active place node and mouse mode as they were (:mod:`scene_batch`).
"""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import slicer

from .axes import AXES, LINE_CLASS, line_key, set_axis, show_label
from .hierarchy import CreatedNodes, parent_item, place, remove_node, study_item, subject_hierarchy
from .scene_batch import scene_batch
from .segments import label_values, lesion_segmentation, segment_ids
from .tables import fill_lesion_table
from .volumes import read_image

TABLE_ROLE = "AttUMambaSeg.LesionTable"
AXIS_ROLE = "AttUMambaSeg.RecistAxis"
CT_ROLE = "AttUMambaSeg.CT"
PET_ROLE = "AttUMambaSeg.PET"
STUDY_ATTRIBUTE = "AttUMambaSeg.StudyID"
REPORT_ATTRIBUTE = "AttUMambaSeg.Report"
_NUMBERS = ("volume_ml", "suv_max", "suv_mean", "suv_peak", "tlg", "ct_mean_hu")


@dataclass
class LesionResult:
    """The nodes of one result; ``table`` and ``folder`` are None until made (or after the user deleted them)."""

    segmentation: object
    table: object | None = None
    lines: dict[tuple[int, str], object] = field(default_factory=dict)
    folder: int | None = None

    @classmethod
    def of(cls, segmentation_node) -> LesionResult:
        """The result a segmentation node heads (any segmentation: missing parts are made on refresh)."""
        table = segmentation_node.GetNodeReference(TABLE_ROLE)
        lines = {}
        for index in range(segmentation_node.GetNumberOfNodeReferences(AXIS_ROLE)):
            line = segmentation_node.GetNthNodeReference(AXIS_ROLE, index)
            if line is not None and line_key(line) is not None:
                lines[line_key(line)] = line
        anchor = table or next(iter(lines.values()), None)
        folder = parent_item(segmentation_node.GetScene(), anchor) if anchor is not None else None
        return cls(segmentation_node, table, lines, folder)

    @property
    def report(self) -> dict:
        text = self.segmentation.GetAttribute(REPORT_ATTRIBUTE)
        return json.loads(text) if text else {"lesions": [], "totals": {}}

    @property
    def study_id(self) -> str | None:
        return self.segmentation.GetAttribute(STUDY_ATTRIBUTE) or None

    def nodes(self) -> list:
        return [n for n in (self.segmentation, self.table, *self.lines.values()) if n is not None]


def validate_report(report: dict) -> None:
    """Refuse a report that is not DESIGN.md §4's before any node is touched."""
    lesions = report.get("lesions") if isinstance(report, dict) else None
    if not isinstance(lesions, list):
        raise ValueError("the lesion report has no 'lesions' list; is the backend the same version?")  # noqa: TRY004
    for lesion in lesions:
        try:
            int(lesion["id"])
            for key in _NUMBERS:
                if lesion[key] is not None and not isinstance(lesion[key], numbers.Real):
                    raise TypeError(key)
            recist = lesion["recist"]
            for axis in AXES:
                float(recist[f"{axis}_axis_mm"])
                if np.asarray(recist[f"{axis}_axis_lps"], float).shape != (2, 3):
                    raise ValueError(f"{axis}_axis_lps")
            bool(recist["measurable"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"lesion {lesion.get('id', '?') if isinstance(lesion, dict) else '?'} of the report "
                             f"is malformed ({error}); is the backend the same version?") from None


def build_result(scene, ct_node, labelmap_file: str | Path, report: dict, *, pet_node=None,
                 study_id: str | None = None, name: str | None = None, replace=None,
                 reference_node=None) -> LesionResult:
    """Turn a downloaded instance labelmap and its report into nodes.

    A new segmentation node (under the CT's study) unless ``replace`` is given, whose
    segments are then replaced and whose table and lines are reused. The segmentation's
    reference geometry, on which edits are made and re-measured, is ``reference_node``'s
    grid (the grid the backend labelled on), the CT's by default.
    """
    validate_report(report)
    labels, ijk_to_ras = read_image(labelmap_file)
    missing = {int(lesion["id"]) for lesion in report["lesions"]} - set(np.unique(labels).tolist())
    if missing:
        raise ValueError(f"the report names lesions {sorted(missing)} that the labelmap lacks; "
                         "download both from the same job")
    segments = lesion_segmentation(labels, ijk_to_ras)
    with scene_batch(scene):
        return _build(scene, ct_node, segments, report, pet_node, study_id, name, replace, reference_node)


def _build(scene, ct_node, segments, report, pet_node, study_id, name, replace, reference_node) -> LesionResult:
    created = CreatedNodes(scene)
    backup = None
    target = replace
    try:
        if target is None:
            target = created.add_node("vtkMRMLSegmentationNode", name or f"{ct_node.GetName()} lesions")
            target.CreateDefaultDisplayNodes()
            place(scene, target, study_item(scene, ct_node))
        else:
            backup = slicer.vtkSegmentation()
            backup.DeepCopy(target.GetSegmentation())
        _set_segments(target, segments)
        result = refresh(LesionResult.of(target), report, created, study_item(scene, ct_node))
        target.SetReferenceImageGeometryParameterFromVolumeNode(reference_node or ct_node)
        target.SetNodeReferenceID(CT_ROLE, ct_node.GetID())
        if pet_node is not None:
            target.SetNodeReferenceID(PET_ROLE, pet_node.GetID())
        else:
            target.RemoveNodeReferenceIDs(PET_ROLE)
        if study_id:
            target.SetAttribute(STUDY_ATTRIBUTE, study_id)
    except BaseException:
        created.discard()
        if backup is not None:
            _set_segments(target, backup)
        raise
    return result


def _set_segments(node, source) -> None:
    segmentation = node.GetSegmentation()
    was_modifying = node.StartModify()
    try:
        segmentation.RemoveAllSegments()
        for segment_id in segment_ids(source):
            if not segmentation.CopySegmentFromSegmentation(source, segment_id):
                raise RuntimeError(f"Slicer could not copy segment {segment_id}")
    finally:
        node.EndModify(was_modifying)


def refresh(result: LesionResult, report: dict, created: CreatedNodes | None = None,
            folder_parent: int | None = None) -> LesionResult:
    """Show ``report`` in the result's table and lines, in place; make what is missing.

    Lesion ``id`` N belongs to the segment exported with value N (see ``segments.label_values``).
    Lines of lesions no longer in the report are removed once everything else succeeded. Nodes
    made here are removed again if it fails (by the caller when it passes ``created``).
    """
    validate_report(report)
    scene = result.segmentation.GetScene()
    with scene_batch(scene):
        if created is not None:
            return _refresh(result, report, created, folder_parent)
        own = CreatedNodes(scene)
        try:
            return _refresh(result, report, own, folder_parent)
        except BaseException:
            own.discard()
            raise


def _refresh(result: LesionResult, report: dict, created: CreatedNodes, folder_parent: int | None) -> LesionResult:
    segmentation_node = result.segmentation
    scene = segmentation_node.GetScene()
    segmentation = segmentation_node.GetSegmentation()
    segment_of = {value: segment_id for segment_id, value in label_values(segmentation).items()}
    lesions = [{**lesion, "segment": _segment_name(segmentation, segment_of.get(int(lesion["id"])))}
               for lesion in report["lesions"]]

    if result.folder is None or not subject_hierarchy(scene).GetItemName(result.folder):
        parent = folder_parent if folder_parent is not None else _default_parent(segmentation_node)
        result.folder = created.add_folder(segmentation_node.GetName(), parent)
    if result.table is None or result.table.GetScene() is None:
        result.table = created.add_node("vtkMRMLTableNode", f"{segmentation_node.GetName()} lesion table")
        place(scene, result.table, result.folder)
        segmentation_node.SetNodeReferenceID(TABLE_ROLE, result.table.GetID())
    fill_lesion_table(result.table, lesions)

    wanted = {}
    for lesion in lesions:
        segment_id = segment_of.get(int(lesion["id"]))
        color = segmentation.GetSegment(segment_id).GetColor() if segment_id else (1.0, 1.0, 0.0)
        name = lesion["segment"] or f"Lesion {int(lesion['id'])}"
        for axis in AXES:
            key = (int(lesion["id"]), axis)
            line = result.lines.get(key)
            if line is None or line.GetScene() is None:
                line = created.add_node(LINE_CLASS, f"{name} {axis} axis")
                place(scene, line, result.folder)
            set_axis(line, lesion, axis, name, color)
            wanted[key] = line

    for key, line in result.lines.items():
        if wanted.get(key) is not line:
            remove_node(scene, line)
    result.lines = wanted
    segmentation_node.RemoveNodeReferenceIDs(AXIS_ROLE)
    for line in wanted.values():
        segmentation_node.AddNodeReferenceID(AXIS_ROLE, line.GetID())
    segmentation_node.SetAttribute(REPORT_ATTRIBUTE, json.dumps({**report, "lesions": lesions}))
    return result


def show_lesion_labels(segmentation_node, lesion_id: int | None) -> None:
    """Show the line labels of one lesion (the one selected in the table) and hide all others; None hides all."""
    for (lesion, _axis), line in LesionResult.of(segmentation_node).lines.items():
        show_label(line, lesion_id is not None and lesion == int(lesion_id))


def _segment_name(segmentation, segment_id: str | None) -> str:
    segment = segmentation.GetSegment(segment_id) if segment_id else None
    return segment.GetName() if segment is not None else ""


def _default_parent(segmentation_node) -> int | None:
    scene = segmentation_node.GetScene()
    study = study_item(scene, segmentation_node.GetNodeReference(CT_ROLE))
    return study if study is not None else parent_item(scene, segmentation_node)
