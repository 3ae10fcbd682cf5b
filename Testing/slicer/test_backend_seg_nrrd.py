"""The backend's ``.seg.nrrd`` (attumamba.io.write_seg_nrrd) as Slicer's own storage node reads it."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk
from attumamba.io import write_seg_nrrd
from mrml_helpers import segment_voxels


def _oblique(array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((2.0, 3.0, 4.0))
    image.SetOrigin((-12.5, 40.0, -300.0))
    c, s = np.cos(0.4), np.sin(0.4)
    image.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    return image


def _lesions() -> np.ndarray:
    labels = np.zeros((12, 14, 16), np.uint16)
    labels[2:6, 3:9, 4:12] = 1
    k, j, i = np.indices(labels.shape)
    labels[(k - 8) ** 2 + (j - 9) ** 2 + (i - 4) ** 2 <= 5] = 2
    labels[10, 1:3, 13:15] = 3
    return labels


def _read(scene, path):
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "backend lesions")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(node), f"Slicer could not read {path}"
    return node


def _ijk_to_ras(image: sitk.Image) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * image.GetSpacing()
    matrix[:3, 3] = image.GetOrigin()
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ matrix


def test_slicer_reads_named_coded_lesions_voxel_for_voxel(scene, tmp_path):
    labels = _lesions()
    image = _oblique(labels)
    path = write_seg_nrrd(image, tmp_path / "case.seg.nrrd", names={3: "Node near aorta"})
    node = _read(scene, path)
    segmentation = node.GetSegmentation()
    names = {number: name for number, name in ((1, "Lesion 1"), (2, "Lesion 2"), (3, "Node near aorta"))}
    assert segmentation.GetNumberOfSegments() == 3
    colours = set()
    for number, name in names.items():
        segment_id = segmentation.GetSegmentIdBySegmentName(name)
        assert segment_id == f"Lesion_{number}"
        segment = segmentation.GetSegment(segment_id)
        assert segment.GetLabelValue() == number
        oriented, layer = segment_voxels(node, segment_id)  # the shared layer: every lesion by its value
        mask = layer == segment.GetLabelValue()
        assert np.count_nonzero(mask) == np.count_nonzero(labels == number)
        # the voxels sit where the backend put them: same (k, j, i) on the same oblique grid
        extent = oriented.GetExtent()
        expected = labels[extent[4]:extent[5] + 1, extent[2]:extent[3] + 1, extent[0]:extent[1] + 1] == number
        assert np.array_equal(mask, expected)
        matrix = vtk.vtkMatrix4x4()
        oriented.GetImageToWorldMatrix(matrix)
        assert np.allclose([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], _ijk_to_ras(image))
        entry = slicer.vtkSlicerTerminologyEntry()
        assert "108369006" in segment.GetTerminology()
        assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(segment.GetTerminology(), entry)
        assert entry.GetCategoryObject().GetCodeValue() == "49755003"
        assert entry.GetTypeObject().GetCodeValue() == "108369006"
        assert segment.GetName() == name  # not renamed "Neoplasm" after its terminology
        colours.add(tuple(round(c, 3) for c in segment.GetColor()))
    assert len(colours) == 3


def test_the_reference_geometry_is_the_labelmap_grid(scene, tmp_path):
    image = _oblique(_lesions())
    node = _read(scene, write_seg_nrrd(image, tmp_path / "case.seg.nrrd"))
    name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    geometry = slicer.vtkOrientedImageData()
    assert slicer.vtkSegmentationConverter.DeserializeImageGeometry(
        node.GetSegmentation().GetConversionParameter(name), geometry, False)
    matrix = vtk.vtkMatrix4x4()
    geometry.GetImageToWorldMatrix(matrix)
    assert np.allclose([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], _ijk_to_ras(image))
    assert geometry.GetExtent() == (0, 15, 0, 13, 0, 11)


@pytest.mark.parametrize("count", [0, 300])
def test_no_lesion_and_more_lesions_than_a_byte_holds(scene, tmp_path, count):
    labels = np.zeros((4, 20, 20), np.uint16)
    labels.ravel()[np.arange(count) * 5] = np.arange(1, count + 1)
    node = _read(scene, write_seg_nrrd(_oblique(labels), tmp_path / "case.seg.nrrd"))
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == count
    if count:
        last = segmentation.GetSegmentIdBySegmentName(f"Lesion {count}")
        oriented, layer = segment_voxels(node, last)
        assert np.count_nonzero(layer == count) == 1
        k, j, i = np.unravel_index((count - 1) * 5, labels.shape)
        extent = oriented.GetExtent()
        assert layer[k - extent[4], j - extent[2], i - extent[0]] == count
