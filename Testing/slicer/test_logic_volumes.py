"""LPS <-> RAS in one place, and volume nodes written for the backend with their true geometry."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk
from mrml_helpers import load_volume


def _module(name: str):
    return importlib.import_module(f"AttUMambaSegLib.logic.{name}")


@pytest.fixture
def oblique(tmp_path):
    """A small volume with a rotated, anisotropic, off-centre grid, as a file Slicer loads."""
    array = np.random.default_rng(3).normal(0, 100, (6, 7, 8)).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 1.5, 3.0))
    image.SetOrigin((12.0, -30.0, 150.0))
    image.SetDirection(sitk.VersorTransform((0.2, -0.3, 0.9), 0.5).GetMatrix())
    sitk.WriteImage(image, str(tmp_path / "oblique.nrrd"))
    return image, tmp_path / "oblique.nrrd"


def test_lps_and_ras_differ_by_the_sign_of_x_and_y(logic):
    geometry = _module("geometry")
    assert geometry.lps_to_ras((1.0, 2.0, 3.0)) == (-1.0, -2.0, 3.0)
    assert geometry.ras_to_lps(geometry.lps_to_ras((4.0, -5.0, 6.0))) == (4.0, -5.0, 6.0)
    direction = sitk.VersorTransform((1.0, 1.0, 0.0), 0.7).GetMatrix()
    matrix = geometry.ijk_to_ras_from_lps((1.0, 2.0, 3.0), (0.5, 0.6, 2.0), direction)
    origin, spacing, back = geometry.lps_from_ijk_to_ras(matrix)
    assert np.allclose(origin, (1.0, 2.0, 3.0)) and np.allclose(spacing, (0.5, 0.6, 2.0))
    assert np.allclose(back, direction)
    assert np.allclose(geometry.ras_to_ijk(matrix, (matrix @ [1.0, 2.0, 3.0, 1.0])[:3]), (1.0, 2.0, 3.0))


def test_a_volume_is_written_with_its_geometry_as_lps(oblique, scene, tmp_path, logic):
    image, path = oblique
    node = load_volume(scene, path, "oblique")
    written = sitk.ReadImage(str(_module("volumes").write_volume(node, tmp_path / "upload.nrrd")))

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    flip = np.diag([-1.0, -1.0, 1.0])
    assert np.allclose(written.GetOrigin(), flip @ ras[:3, 3])
    assert np.allclose(written.GetSpacing(), np.linalg.norm(ras[:3, :3], axis=0))
    assert np.allclose(np.reshape(written.GetDirection(), (3, 3)), flip @ ras[:3, :3] / written.GetSpacing())

    assert np.allclose(written.GetOrigin(), image.GetOrigin())  # and the file Slicer read in the first place
    assert np.allclose(written.GetSpacing(), image.GetSpacing())
    assert np.allclose(written.GetDirection(), image.GetDirection())
    assert np.array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(image))
    assert written.GetPixelID() == image.GetPixelID()


def test_a_linear_parent_transform_is_part_of_the_written_geometry(oblique, scene, tmp_path, logic):
    image, path = oblique
    node = load_volume(scene, path, "moved")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = vtk.vtkMatrix4x4()
    shift.SetElement(0, 3, 10.0)  # 10 mm to the patient's right (RAS x)
    transform.SetMatrixTransformToParent(shift)
    node.SetAndObserveTransformNodeID(transform.GetID())
    written = sitk.ReadImage(str(_module("volumes").write_volume(node, tmp_path / "moved.nrrd")))
    assert np.allclose(written.GetOrigin(), np.add(image.GetOrigin(), (-10.0, 0.0, 0.0)))  # LPS x = -RAS x


def test_a_non_linear_transform_is_refused_with_what_to_do(oblique, scene, tmp_path, logic):
    _, path = oblique
    node = load_volume(scene, path, "warped")
    warp = vtk.vtkThinPlateSplineTransform()
    source, target = vtk.vtkPoints(), vtk.vtkPoints()
    for point in ((0, 0, 0), (50, 0, 0), (0, 50, 0), (0, 0, 50)):
        source.InsertNextPoint(point)
        target.InsertNextPoint(point[0] + 2, point[1], point[2])
    warp.SetSourceLandmarks(source)
    warp.SetTargetLandmarks(target)
    transform = scene.AddNewNodeByClass("vtkMRMLTransformNode")
    transform.SetAndObserveTransformToParent(warp)
    node.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(ValueError, match="harden the transform"):
        _module("volumes").write_volume(node, tmp_path / "warped.nrrd")
    assert not (tmp_path / "warped.nrrd").exists()


def test_a_vector_volume_is_refused(scene, tmp_path, logic):
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode")
    data = vtk.vtkImageData()
    data.SetDimensions(3, 3, 3)
    data.AllocateScalars(vtk.VTK_FLOAT, 3)
    node.SetAndObserveImageData(data)
    with pytest.raises(ValueError, match="3 components"):
        _module("volumes").write_volume(node, tmp_path / "rgb.nrrd")
    assert isinstance(node, slicer.vtkMRMLScalarVolumeNode)


def test_a_volume_file_becomes_a_node_under_its_study_and_goes_with_a_discard(oblique, scene, logic):
    """One function adds a volume from a file, for opening a batch study and for loading the sample."""
    volumes, hierarchy = _module("volumes"), _module("hierarchy")
    image, path = oblique
    created = hierarchy.CreatedNodes(scene)
    study = created.add_study("Study A")
    node = volumes.add_volume_file(created, path, "Study A CT", study)
    assert node.GetName() == "Study A CT" and node.GetDisplayNode() is not None
    assert hierarchy.study_item(scene, node) == study
    array, ijk_to_ras = volumes.volume_array(node)
    assert np.array_equal(array, sitk.GetArrayFromImage(image))
    origin, spacing, direction = _module("geometry").lps_from_ijk_to_ras(ijk_to_ras)
    assert np.allclose(origin, image.GetOrigin()) and np.allclose(spacing, image.GetSpacing())
    assert np.allclose(direction, image.GetDirection())
    created.discard()
    assert node.GetScene() is None
    for user in ("batch", "sample"):  # no copy of it elsewhere
        assert _module(user).add_volume_file is volumes.add_volume_file
