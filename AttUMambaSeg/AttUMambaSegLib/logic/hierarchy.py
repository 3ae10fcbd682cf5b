"""Where results go in the subject hierarchy, and taking back what a failed call added.

Results sit under the CT's study so that DICOM SEG export and the Data module show them with
their images. :class:`CreatedNodes` records every node and folder one call adds, so that a
failure half-way removes exactly those and nothing the user already had.
"""

from __future__ import annotations

import slicer


def subject_hierarchy(scene):
    return slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)


def item_of(scene, node) -> int:
    """The node's subject hierarchy item (created under the scene if the node has none yet)."""
    hierarchy = subject_hierarchy(scene)
    item = hierarchy.GetItemByDataNode(node)
    if not item:
        item = hierarchy.CreateItem(hierarchy.GetSceneItemID(), node)
    return item


def study_item(scene, volume_node) -> int | None:
    """The study the volume belongs to (DICOM-loaded volumes have one), else None."""
    if volume_node is None:
        return None
    hierarchy = subject_hierarchy(scene)
    item = hierarchy.GetItemByDataNode(volume_node)
    if not item:
        return None
    study = hierarchy.GetItemAncestorAtLevel(item, slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMLevelStudy())
    return study or None


def place(scene, node, parent_item: int | None) -> None:
    """Put the node under ``parent_item`` (the scene's top level when None)."""
    hierarchy = subject_hierarchy(scene)
    hierarchy.SetItemParent(item_of(scene, node), parent_item or hierarchy.GetSceneItemID())


def parent_item(scene, node) -> int | None:
    hierarchy = subject_hierarchy(scene)
    item = hierarchy.GetItemByDataNode(node)
    parent = hierarchy.GetItemParent(item) if item else 0
    return parent if parent and parent != hierarchy.GetSceneItemID() else None


def remove_node(scene, node) -> None:
    """Remove a node with the display and storage nodes that only it uses."""
    if node is None or node.GetScene() is None:
        return
    helpers = []
    if hasattr(node, "GetNumberOfDisplayNodes"):
        helpers.extend(node.GetNthDisplayNode(n) for n in range(node.GetNumberOfDisplayNodes()))
    if hasattr(node, "GetNumberOfStorageNodes"):
        helpers.extend(node.GetNthStorageNode(n) for n in range(node.GetNumberOfStorageNodes()))
    scene.RemoveNode(node)
    for helper in helpers:
        if helper is not None and helper.GetScene() is not None:
            scene.RemoveNode(helper)


class CreatedNodes:
    """Nodes and folders (or study items) one call added; ``discard()`` removes them (newest first)."""

    def __init__(self, scene):
        self.scene = scene
        self.nodes: list = []
        self.folders: list[int] = []

    def add_node(self, class_name: str, name: str):
        node = self.scene.AddNewNodeByClass(class_name, self.scene.GenerateUniqueName(name))
        if node is None:
            raise RuntimeError(f"the scene cannot create a {class_name}; is its module loaded?")
        self.nodes.append(node)
        return node

    def add_folder(self, name: str, parent: int | None) -> int:
        hierarchy = subject_hierarchy(self.scene)
        folder = hierarchy.CreateFolderItem(parent or hierarchy.GetSceneItemID(), name)
        self.folders.append(folder)
        return folder

    def add_study(self, name: str) -> int:
        """A patient item holding a study item, both named ``name``; the study item is returned."""
        hierarchy = subject_hierarchy(self.scene)
        patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), name)
        self.folders.append(patient)
        study = hierarchy.CreateStudyItem(patient, name)
        self.folders.append(study)
        return study

    def discard(self) -> None:
        for node in reversed(self.nodes):
            remove_node(self.scene, node)
        hierarchy = subject_hierarchy(self.scene)
        for folder in reversed(self.folders):
            if hierarchy.GetItemName(folder):
                hierarchy.RemoveItem(folder, True, True)
        self.nodes.clear()
        self.folders.clear()
