"""A response assessment as MRML nodes: the lesion-group table, the reference regions as ROIs a
reader drags, the follow-up under the registration's transform (what the reader changes there:
:mod:`.response_reader`).

The table node is the assessment's handle: it references both segmentations, the transform and
the reference ROIs, and carries the backend's response, the two lesion reports and the reader's
last choices, so a re-assessment works from the node alone. The registration maps baseline
points to follow-up points (ITK's fixed -> moving); read from its ITK file, Slicer makes of it
the transform that shows the follow-up on the baseline, so the follow-up's CT, PET, segments
and reference ROIs go under it and one world point shows a lesion in both. A reference ROI
under the transform keeps its own (follow-up) coordinates, which is what the backend wants.
A build that fails removes what it made and puts every node back where it was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import slicer
import vtk

from .geometry import lps_to_ras
from .hierarchy import CreatedNodes, place, remove_node, study_item
from .results import CT_ROLE, PET_ROLE
from .scene_batch import scene_batch
from .segments import reference_geometry
from .tables import Column, fill_table

WHEN = ("baseline", "follow_up")
KINDS = ("liver", "blood_pool")
SEGMENTATION_ROLE = "AttUMambaSeg.Response.{}"       # .baseline / .follow_up
TRANSFORM_ROLE = "AttUMambaSeg.Response.Transform"
REFERENCE_ROLE = "AttUMambaSeg.Response.Reference.{}.{}"   # kind, when
RESPONSE_ATTRIBUTE = "AttUMambaSeg.Response"
REPORTS_ATTRIBUTE = "AttUMambaSeg.Response.Reports"
READER_ATTRIBUTE = "AttUMambaSeg.Response.Reader"
RESPONSE_ID_ATTRIBUTE = "AttUMambaSeg.Response.ID"
SET_CENTRE_ATTRIBUTE = "AttUMambaSeg.Reference.SetCentreRAS"   # where the module last put the ROI
READER_PLACED_ATTRIBUTE = "AttUMambaSeg.Reference.ReaderPlaced"
MOVED_MM = 0.5     # a reference ROI moved further than this was dragged by the reader


def _side(when: str, key: str):
    return lambda row: row[when][key]


RESPONSE_COLUMNS: tuple[Column, ...] = (
    Column("group", "Group", "", "string", lambda row: row["group"], "lesion group (matched across time points)"),
    Column("kind", "Kind", "", "string", lambda row: row["kind"], "matched, new, disappeared, split, merged, complex"),
    Column("target", "Target", "", "string", lambda row: "yes" if row["target"] else "",
           "a RECIST 1.1 target lesion"),
    Column("organ", "Organ", "", "string", lambda row: row.get("organ") or "",
           "the organ, a reader input (RECIST 1.1 takes at most 2 targets per organ)"),
    Column("nodal", "Node", "", "string", lambda row: "yes" if row.get("nodal") else "",
           "a lymph node, a reader input (measured by its short axis; normal below 10 mm)"),
    Column("baseline_ids", "Baseline lesions", "", "string", lambda row: " ".join(map(str, row["baseline_ids"]))),
    Column("follow_up_ids", "Follow-up lesions", "", "string", lambda row: " ".join(map(str, row["follow_up_ids"]))),
    *(Column(f"{when}_{key}", f"{title} {label}", unit, "double", _side(when, key))
      for key, label, unit in (("volume_ml", "volume", "mL"), ("suv_max", "SUVmax", "g/mL"),
                               ("sul_peak", "SULpeak", "g/mL"), ("long_axis_mm", "long axis", "mm"),
                               ("short_axis_mm", "short axis", "mm"))
      for when, title in (("baseline", "Baseline"), ("follow_up", "Follow-up"))),
    Column("volume_change_pct", "Volume change", "%", "double", lambda row: row["volume_change_pct"]),
)


@dataclass
class ResponseResult:
    """The nodes of one assessment (see the module docstring)."""

    table: object
    segmentations: dict[str, object]
    transform: object | None = None
    references: dict[tuple[str, str], object] = field(default_factory=dict)   # (kind, when) -> ROI node

    @classmethod
    def of(cls, table_node) -> ResponseResult:
        references = {(kind, when): table_node.GetNodeReference(REFERENCE_ROLE.format(kind, when))
                      for kind in KINDS for when in WHEN}
        return cls(table_node, {when: table_node.GetNodeReference(SEGMENTATION_ROLE.format(when)) for when in WHEN},
                   table_node.GetNodeReference(TRANSFORM_ROLE), {k: v for k, v in references.items() if v is not None})

    def _json(self, attribute: str, default):
        text = self.table.GetAttribute(attribute)
        return json.loads(text) if text else default

    @property
    def response(self) -> dict:
        return self._json(RESPONSE_ATTRIBUTE, {})

    @property
    def reports(self) -> dict:
        return self._json(REPORTS_ATTRIBUTE, {})

    @property
    def reader(self) -> dict:
        return self._json(READER_ATTRIBUTE, {})

    @property
    def response_id(self) -> str | None:
        return self.table.GetAttribute(RESPONSE_ID_ATTRIBUTE) or None

    def target_ids(self) -> list[int]:
        recist = (self.response.get("categories") or {}).get("recist") or {}
        return [int(t["baseline_id"]) for t in recist.get("targets", [])]


def group_rows(response: dict, reader: dict | None = None) -> list[dict]:
    """The response's lesion groups with a ``target`` flag (a baseline lesion of the group is a target) and
    the reader's ``organ`` and ``nodal`` for the group's first baseline lesion (else what the criteria used)."""
    targets = {int(t["baseline_id"]): t for t in ((response.get("categories") or {}).get("recist") or {}).get("targets", [])}
    info = {int(k): v for k, v in ((reader or {}).get("lesion_info") or {}).items()}
    rows = []
    for row in response.get("lesions", []):
        first = row["baseline_ids"][0] if row["baseline_ids"] else None
        given = info.get(first) or targets.get(first) or {}
        rows.append({**row, "target": bool(set(targets) & set(row["baseline_ids"])),
                     "organ": given.get("organ"), "nodal": bool(given.get("nodal", False))})
    return rows


def categories(response: dict) -> list[tuple[str, str, str]]:
    """(system, category, the rule and numbers that decided it) per criterion; "not assessed" when absent."""
    lines = []
    for key, system in (("recist", "RECIST 1.1"), ("percist", "PERCIST 1.0"), ("deauville", "Deauville")):
        found = (response.get("categories") or {}).get(key)
        if not found:
            lines.append((system, "not assessed", "needs both reference regions at the follow-up (liver and blood pool)"))
            continue
        notes = "; ".join(found.get("notes") or [])
        lines.append((found.get("system") or system, str(found.get("category")),
                      found.get("rule", "") + (f"\n{notes}" if notes else "")))
    return lines


def build_response(scene, segmentations: dict, response: dict, reports: dict, reader: dict, response_id: str, *,
                   transform_file=None, previous: ResponseResult | None = None) -> ResponseResult:
    """Make (or, given ``previous``, refresh in place) the nodes of an assessment, in one batch of the scene
    that keeps the user's active place node and mouse mode (the ROIs are markups nodes)."""
    created = CreatedNodes(scene)
    moved: list[tuple[object, str | None]] = []   # (node, its former parent transform ID)
    with scene_batch(scene):
        try:
            return _build(scene, created, moved, segmentations, response, reports, reader, response_id,
                          transform_file, previous)
        except BaseException:
            for node, parent in reversed(moved):
                node.SetAndObserveTransformNodeID(parent)
            created.discard()
            raise


def _build(scene, created, moved, segmentations, response, reports, reader, response_id, transform_file, previous):
    if previous is not None and previous.table.GetScene() is scene:
        result = previous
    else:
        names = " vs ".join(segmentations[when].GetName() for when in WHEN)
        folder = created.add_folder(f"Response {names}",
                                    study_item(scene, segmentations["baseline"].GetNodeReference(CT_ROLE)))
        table = created.add_node("vtkMRMLTableNode", f"Response {names}")
        place(scene, table, folder)
        result = ResponseResult(table, dict(segmentations))
    old_transform = result.transform
    if transform_file is not None:
        result.transform = created.add_node("vtkMRMLTransformNode", "Follow-up to baseline")
        storage = slicer.vtkMRMLTransformStorageNode()
        storage.SetFileName(str(transform_file))
        if not storage.ReadData(result.transform):
            raise RuntimeError(f"Slicer could not read the registration's transform file {transform_file}")
        place(scene, result.transform, _folder_of(scene, result.table))
    follow_up = segmentations["follow_up"]
    if result.transform is not None:
        for node in (follow_up, follow_up.GetNodeReference(CT_ROLE), follow_up.GetNodeReference(PET_ROLE)):
            if node is not None and node.GetTransformNodeID() != result.transform.GetID():
                moved.append((node, node.GetTransformNodeID()))
                node.SetAndObserveTransformNodeID(result.transform.GetID())
    for kind in KINDS:
        for when in WHEN:
            result.references[(kind, when)] = _place_reference(
                scene, created, result, kind, when, response["references"][when][kind], segmentations[when])
    fill_table(result.table, RESPONSE_COLUMNS, group_rows(response, reader))
    table = result.table
    for when in WHEN:
        table.SetNodeReferenceID(SEGMENTATION_ROLE.format(when), segmentations[when].GetID())
        result.segmentations[when] = segmentations[when]
    for (kind, when), roi in result.references.items():
        table.SetNodeReferenceID(REFERENCE_ROLE.format(kind, when), roi.GetID())
    table.SetNodeReferenceID(TRANSFORM_ROLE, result.transform.GetID() if result.transform is not None else None)
    table.SetAttribute(RESPONSE_ATTRIBUTE, json.dumps(response))
    table.SetAttribute(REPORTS_ATTRIBUTE, json.dumps(reports))
    table.SetAttribute(READER_ATTRIBUTE, json.dumps(reader))
    table.SetAttribute(RESPONSE_ID_ATTRIBUTE, response_id)
    if old_transform is not None and old_transform is not result.transform:
        remove_node(scene, old_transform)
    return result


def _place_reference(scene, created, result, kind, when, region, segmentation):
    """The ROI of one reference region: where the backend measured it, or (not found) in the middle of
    the study for the reader to drag onto normal liver / the descending aorta."""
    roi = result.references.get((kind, when))
    if roi is None or roi.GetScene() is None:
        roi = created.add_node("vtkMRMLMarkupsROINode", f"{when.replace('_', '-')} {kind.replace('_', ' ')} reference")
        roi.CreateDefaultDisplayNodes()
        place(scene, roi, _folder_of(scene, result.table))
    if isinstance(region, dict):
        centre = lps_to_ras(region["centre_lps_mm"])
        radius, length = float(region["radius_mm"]), region.get("length_mm")
        size = (2 * radius, 2 * radius, float(length) if length else 2 * radius)
        placed = region.get("how") == "placed by the reader"
        roi.SetDescription(f"{region.get('how', '')}; SUV mean {((region.get('stats') or {}).get('suv_mean'))}")
    else:
        was = roi.GetAttribute(SET_CENTRE_ATTRIBUTE)
        centre = tuple(json.loads(was)) if was else _middle(segmentation)
        size = (30.0, 30.0, 30.0) if kind == "liver" else (10.0, 10.0, 20.0)
        placed = False
        roi.SetDescription(f"{region}; drag onto {'normal right-lobe liver' if kind == 'liver' else 'the descending aorta'}")
    was_modifying = roi.StartModify()
    roi.SetCenter(*centre)
    roi.SetSize(*size)
    roi.SetAttribute(SET_CENTRE_ATTRIBUTE, json.dumps([float(c) for c in centre]))
    roi.SetAttribute(READER_PLACED_ATTRIBUTE, "1" if placed else "")
    roi.SetAndObserveTransformNodeID(result.transform.GetID() if when == "follow_up" and result.transform else None)
    roi.EndModify(was_modifying)
    return roi


def _middle(segmentation) -> tuple[float, float, float]:
    geometry = reference_geometry(segmentation)
    extent = geometry.GetExtent()
    matrix = vtk.vtkMatrix4x4()
    geometry.GetImageToWorldMatrix(matrix)
    ijk = [(extent[2 * a] + extent[2 * a + 1]) / 2.0 for a in range(3)] + [1.0]
    return tuple(float(c) for c in matrix.MultiplyPoint(ijk)[:3])


def _folder_of(scene, node):
    from .hierarchy import parent_item

    return parent_item(scene, node)
