"""Small helpers for the Slicer-side tests (and the README figure): a scene as the Slicer application
sets it up, volumes read by Slicer's reader, segments read and edited the way the Segment Editor does."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support


REPO = Path(__file__).resolve().parents[2]


def load_logic():
    """The module's logic package, imported as Slicer does (the module's folder on ``sys.path``)."""
    folder = str(REPO / "AttUMambaSeg")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module("AttUMambaSegLib.logic")


def headless_scene():
    """A MRML scene with the module logics the Slicer application registers for ``slicer.mrmlScene``.

    Bare slicer-core has no application: without the segmentations logic a segmentation cannot
    make its binary labelmap, without the subject hierarchy logic nodes get no items, and without
    the markups logic the scene does not know markups classes. The application logic makes the
    selection and interaction singletons (the active place node, the mouse mode) and holds its
    module logics only weakly, so the scene keeps them: as in Slicer, the markups logic then makes
    every markups node added outside a batch the active place node.
    """
    scene = slicer.vtkMRMLScene()
    application = slicer.vtkSlicerApplicationLogic()
    application.SetMRMLScene(scene)
    application.GetColorLogic().SetMRMLScene(scene)
    application.GetColorLogic().AddDefaultColorNodes()
    logics = {"SubjectHierarchy": slicer.vtkSlicerSubjectHierarchyModuleLogic(),
              "Segmentations": slicer.vtkSlicerSegmentationsModuleLogic(),
              "Markups": slicer.vtkSlicerMarkupsLogic(),
              "Tables": slicer.vtkSlicerTablesLogic()}
    for name, module_logic in logics.items():
        module_logic.SetMRMLScene(scene)
        module_logic.SetMRMLApplicationLogic(application)
        application.SetModuleLogic(name, module_logic)
    scene._application_logic = application  # keep the logics alive as long as the scene
    scene._module_logics = logics  # the application's references to them are weak
    return scene


def segment_voxels(segmentation_node, segment_id: str):
    """A copy of a segment's binary labelmap (vtkOrientedImageData) and a writable (k, j, i) view of it."""
    image = slicer.vtkOrientedImageData()
    assert slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
        segmentation_node, segment_id, image)
    extent = image.GetExtent()
    shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    return image, numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape)


def edit_segment(segmentation_node, segment_name: str, change: Callable[[np.ndarray, tuple], None]) -> None:
    """Change a segment's voxels in place (``change(voxels_kji, extent)``) and write them back as an edit."""
    segment_id = segmentation_node.GetSegmentation().GetSegmentIdBySegmentName(segment_name)
    image, voxels = segment_voxels(segmentation_node, segment_id)
    change(voxels, image.GetExtent())
    image.Modified()
    assert slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        image, segmentation_node, segment_id, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)


def count_voxels(segmentation_node, segment_name: str) -> int:
    segment_id = segmentation_node.GetSegmentation().GetSegmentIdBySegmentName(segment_name)
    return int(np.count_nonzero(segment_voxels(segmentation_node, segment_id)[1]))


def paint_box(segmentation_node, segment_id: str, extent: tuple[int, int, int, int, int, int]) -> None:
    """Fill a box of voxels (i0, i1, j0, j1, k0, k1 on the reference grid) into a segment, as a paint stroke."""
    name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    image = slicer.vtkOrientedImageData()
    assert slicer.vtkSegmentationConverter.DeserializeImageGeometry(
        segmentation_node.GetSegmentation().GetConversionParameter(name), image, False)
    image.SetExtent(*extent)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    image.GetPointData().GetScalars().Fill(1)
    assert slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        image, segmentation_node, segment_id, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)


def load_volume(scene, path: Path, name: str):
    """A scalar volume node read by Slicer's own reader, as File > Add Data makes it."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        raise RuntimeError(f"Slicer could not read {path}")
    node.SetAndObserveStorageNodeID(storage.GetID())
    node.CreateDefaultDisplayNodes()
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if not hierarchy.GetItemByDataNode(node):  # the app's subject hierarchy plugins do this; slicer-core has none
        hierarchy.CreateItem(hierarchy.GetSceneItemID(), node)
    return node
