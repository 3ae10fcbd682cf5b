"""Adding a result's nodes without disturbing the user's scene.

A result adds dozens of nodes (two RECIST lines per lesion, a table, a folder). Added one by
one, each would refresh the subject hierarchy and every node selector, and each markups node
would become the active place node (Slicer's markups logic and the Markups module do that for
any markups node added outside a batch, and may switch the mouse to placing). Inside the
scene's batch-processing state observers wait and refresh once at the end; the user's active
place node and mouse mode are put back afterwards, whatever an observer did meanwhile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import slicer

#: The nodes the application logic makes for the active place node and the mouse mode.
SELECTION_NODE_ID = "vtkMRMLSelectionNodeSingleton"
INTERACTION_NODE_ID = "vtkMRMLInteractionNodeSingleton"


@contextlib.contextmanager
def scene_batch(scene) -> Iterator[None]:
    """Run the block in one batch-processing state of ``scene`` and keep the user's place node and mouse mode.

    Exception-safe: the state ends and the user's choices come back also when the block fails.
    Nested uses are fine (the scene signals only the outermost batch).
    """
    selection = scene.GetNodeByID(SELECTION_NODE_ID)
    interaction = scene.GetNodeByID(INTERACTION_NODE_ID)
    place_class = selection.GetActivePlaceNodeClassName() if selection is not None else None
    place_id = selection.GetActivePlaceNodeID() if selection is not None else None
    mode = interaction.GetCurrentInteractionMode() if interaction is not None else None
    scene.StartState(slicer.vtkMRMLScene.BatchProcessState)
    try:
        yield
    finally:
        scene.EndState(slicer.vtkMRMLScene.BatchProcessState)
        if selection is not None:
            _restore_place_node(scene, selection, place_class, place_id)
        if interaction is not None and interaction.GetCurrentInteractionMode() != mode:
            interaction.SetCurrentInteractionMode(mode)


def _restore_place_node(scene, selection, class_name: str | None, node_id: str | None) -> None:
    if node_id is not None and scene.GetNodeByID(node_id) is None:
        node_id = None  # the user's node went meanwhile (never by us): nothing to point at
    if selection.GetActivePlaceNodeClassName() != class_name:
        selection.SetReferenceActivePlaceNodeClassName(class_name)
    if selection.GetActivePlaceNodeID() != node_id:
        selection.SetReferenceActivePlaceNodeID(node_id)
