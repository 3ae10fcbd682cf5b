"""Which loaded volumes are the CT and the PET, so the module can pre-select them.

Evidence in order of trust: the DICOM modality (``CT``, ``PT``) that Slicer's DICOM import
stores on the series, the voxel value units (SUV for a PET loaded by the PET DICOM
extension, Hounsfield units for a CT), and last the node's name (``CT``, ``CTres``, ``PET``,
``PT``, ``SUV``...). A name that names both (``PET_CT``) decides nothing. The newest PET
wins (a study just loaded is the one meant), with a CT of the same study when there is one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .hierarchy import study_item, subject_hierarchy

CT, PET = "CT", "PET"
MODALITY_ATTRIBUTE = "DICOM.Modality"
_MODALITIES = {"CT": CT, "PT": PET, "PET": PET}
_CT_UNITS = ("[hnsf'u]", "hu", "hounsfield unit")


@dataclass(frozen=True)
class VolumeClues:
    """What can be known about one volume node without reading its voxels."""

    node: object
    name: str = ""
    modality: str = ""  # DICOM Modality of its series, "" when not loaded from DICOM
    units: str = ""  # voxel value units code (e.g. "{SUVbw}g/ml"), "" when unknown
    study: int | None = None  # its subject hierarchy study item


def name_kind(name: str) -> str | None:
    """CT or PET from words of a node name; None when it names neither or both."""
    kinds = set()
    for word in re.findall(r"[A-Za-z]+", name or ""):
        lower = word.lower()
        if lower in ("pet", "pt", "suv") or lower.startswith(("pet", "suv")) or word.endswith(("PET", "SUV")):
            kinds.add(PET)
        elif lower.startswith("ct") or word.endswith("CT"):
            kinds.add(CT)
    return kinds.pop() if len(kinds) == 1 else None


def volume_kind(clues: VolumeClues) -> str | None:
    """CT, PET or None (unknown, or another modality such as MR)."""
    modality = clues.modality.strip().upper()
    if modality:
        return _MODALITIES.get(modality)
    units = clues.units.strip().lower()
    if "suv" in units:
        return PET
    if units in _CT_UNITS:
        return CT
    return name_kind(clues.name)


def pick_inputs(volumes: list[VolumeClues]) -> tuple[object | None, object | None]:
    """The (CT node, PET node) to pre-select from volumes in loading order; None where nothing fits."""
    cts = [v for v in volumes if volume_kind(v) == CT]
    pets = [v for v in volumes if volume_kind(v) == PET]
    pet = pets[-1] if pets else None
    same_study = [v for v in cts if pet is not None and v.study is not None and v.study == pet.study]
    ct = (same_study or cts or [None])[-1]
    return (ct.node if ct else None, pet.node if pet else None)


def volume_clues(scene) -> list[VolumeClues]:
    """Clues for every scalar volume of the scene (not labelmaps, not hidden nodes), in scene order."""
    hierarchy = subject_hierarchy(scene)
    clues = []
    nodes = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
    for index in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(index)
        if node.IsA("vtkMRMLLabelMapVolumeNode") or node.GetHideFromEditors():
            continue
        item = hierarchy.GetItemByDataNode(node) if hierarchy is not None else 0
        modality = node.GetAttribute(MODALITY_ATTRIBUTE) or ""
        if not modality and item:
            modality = hierarchy.GetItemAttribute(item, MODALITY_ATTRIBUTE) or ""
        units = node.GetVoxelValueUnits() if hasattr(node, "GetVoxelValueUnits") else None
        clues.append(VolumeClues(node, node.GetName() or "", modality, (units.GetCodeValue() or "") if units else "",
                                 study_item(scene, node)))
    return clues


def preselect(scene, ct=None, pet=None) -> tuple[object | None, object | None]:
    """The (CT, PET) to show: ``ct`` and ``pet`` as given (the user's choice stays), the missing
    ones picked from ``scene``; never one node for both."""
    if ct is not None and pet is not None:
        return ct, pet
    picked_ct, picked_pet = pick_inputs(volume_clues(scene))
    if ct is None and picked_ct is not pet:
        ct = picked_ct
    if pet is None and picked_pet is not ct:
        pet = picked_pet
    return ct, pet
