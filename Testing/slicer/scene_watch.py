"""What a build does to the scene around it, as the Slicer application would see it (issue 17, item 7).

``SceneWatch`` gives the user their own active markups list and the "ViewTransform" mouse mode,
and stands in for the Markups module's GUI, which switches the mouse to placing when a markups
node is added (it does so for nodes added outside a batch; the stand-in does it for every one,
so that a test shows the build puts the user's mode back whatever an observer did). It counts
the scene's batches and notes, for every node added, whether a batch was going on.
"""

from __future__ import annotations

import slicer
import vtk


class SceneWatch:
    def __init__(self, scene):
        self.scene = scene
        self.selection = scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
        self.interaction = scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
        assert self.selection is not None and self.interaction is not None, "the scene has no application logic"
        self.users_list = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "the user's own points")
        self.selection.SetReferenceActivePlaceNodeClassName("vtkMRMLMarkupsFiducialNode")
        self.selection.SetReferenceActivePlaceNodeID(self.users_list.GetID())
        self.interaction.SetCurrentInteractionMode(slicer.vtkMRMLInteractionNode.ViewTransform)
        self.batches_started = self.batches_ended = 0
        self.added: list[tuple[str, bool]] = []   # (class name, added inside a batch)
        scene_class = slicer.vtkMRMLScene
        self._observers = [
            scene.AddObserver(scene_class.StartBatchProcessEvent, self._started),
            scene.AddObserver(scene_class.EndBatchProcessEvent, self._ended),
            scene.AddObserver(scene_class.NodeAddedEvent, self._node_added_observer()),
        ]

    def _started(self, caller, event):
        self.batches_started += 1

    def _ended(self, caller, event):
        self.batches_ended += 1

    def _node_added_observer(self):
        @vtk.calldata_type(vtk.VTK_OBJECT)
        def node_added(caller, event, node):
            self.added.append((node.GetClassName(), bool(self.scene.IsBatchProcessing())))
            if node.IsA("vtkMRMLMarkupsNode"):   # the Markups module's reaction (see the docstring)
                self.interaction.SetCurrentInteractionMode(slicer.vtkMRMLInteractionNode.Place)

        return node_added

    def users_choices_kept(self) -> bool:
        return (self.selection.GetActivePlaceNodeID() == self.users_list.GetID()
                and self.selection.GetActivePlaceNodeClassName() == "vtkMRMLMarkupsFiducialNode"
                and self.interaction.GetCurrentInteractionMode() == slicer.vtkMRMLInteractionNode.ViewTransform)

    def reset(self) -> None:
        self.batches_started = self.batches_ended = 0
        self.added.clear()

    def close(self) -> None:
        for tag in self._observers:
            self.scene.RemoveObserver(tag)
