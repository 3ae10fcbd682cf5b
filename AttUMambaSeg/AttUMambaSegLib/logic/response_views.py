"""Baseline and follow-up side by side: the baseline in the left (Red) slice view, the follow-up,
registered onto it, in the right (Yellow) one, their navigation linked.

The follow-up's volumes sit under the registration's transform (:mod:`.response_scene`), so one
world point is the same anatomy in both views: scrolling or clicking a lesion row moves both to
the same lesion at both time points. Each view shows its own time point's CT with its PET over it
and only its own segments (the baseline's also in 3D). The layout is switched through the scene's
layout node, which Slicer's layout manager follows; without one (no GUI) only the views are set.
"""

from __future__ import annotations

import slicer

from .results import CT_ROLE, PET_ROLE

VIEWS = {"baseline": "Red", "follow_up": "Yellow"}   # Slicer's side-by-side layout: Red left, Yellow right
PET_OPACITY = 0.4


def show_side_by_side(scene, result) -> None:
    """Arrange the two time points of ``result`` (a ``ResponseResult``) side by side."""
    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    if layout is not None:
        layout.SetViewArrangement(slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView)
    three_d = [node.GetID() for node in _nodes(scene, "vtkMRMLViewNode")]
    for when, view in VIEWS.items():
        segmentation = result.segmentations[when]
        composite = view_node(scene, "vtkMRMLSliceCompositeNode", view)
        if composite is not None:
            ct, pet = segmentation.GetNodeReference(CT_ROLE), segmentation.GetNodeReference(PET_ROLE)
            composite.SetBackgroundVolumeID(ct.GetID() if ct is not None else None)
            composite.SetForegroundVolumeID(pet.GetID() if pet is not None else None)
            composite.SetForegroundOpacity(PET_OPACITY if pet is not None else 0.0)
            composite.SetLinkedControl(True)
        slice_node = view_node(scene, "vtkMRMLSliceNode", view)
        display = segmentation.GetDisplayNode()
        if display is not None and slice_node is not None:
            display.SetViewNodeIDs([slice_node.GetID(), *(three_d if when == "baseline" else [])])


def view_node(scene, class_name: str, layout_name: str):
    """The node of ``class_name`` (slice or slice composite) of the view named ``layout_name``."""
    return next((node for node in _nodes(scene, class_name) if node.GetLayoutName() == layout_name), None)


def _nodes(scene, class_name: str) -> list:
    return [scene.GetNthNodeByClass(i, class_name) for i in range(scene.GetNumberOfNodesByClass(class_name))]
