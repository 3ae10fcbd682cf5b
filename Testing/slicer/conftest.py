"""The Slicer-side logic, loaded as the module file loads it (by path, under a private name)."""

from __future__ import annotations

import importlib.util
import sys
import types
import unittest
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Testing" / "backend"))  # tiny_model, loopback
sys.path.insert(0, str(Path(__file__).resolve().parent))  # mrml_helpers
sys.path.insert(0, str(REPO / "AttUMambaSeg"))  # as Slicer puts every scripted module's folder on sys.path


def _stub_translations() -> None:
    """``slicer.i18n`` as the Slicer app has it (bare slicer-core lacks it): no translator installed,
    so every string is its English source."""
    if "slicer.i18n" in sys.modules:
        return
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    sys.modules["slicer.i18n"] = i18n


_stub_translations()


@pytest.fixture(scope="session")
def logic():
    from mrml_helpers import load_logic

    return load_logic()


class _Base:
    def __init__(self, *args, **kwargs):
        pass


@pytest.fixture
def qt_stub():
    """Stands in for PythonQt's ``qt`` (only Slicer has it); a test module may give a richer one."""
    return types.ModuleType("qt")


@pytest.fixture
def module(monkeypatch, logic, qt_stub):
    """The module file, loaded with stand-ins for what only the Slicer GUI has: ``qt``,
    ``slicer.ScriptedLoadableModule`` and ``slicer.parameterNodeWrapper``."""
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    wrapper.Choice = lambda choices: ("Choice", tuple(choices))
    wrapper.WithinRange = lambda low, high: ("WithinRange", low, high)
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleWidget"):
        setattr(scripted, name, type(name, (_Base,), {}))
    scripted.ScriptedLoadableModuleTest = type("ScriptedLoadableModuleTest", (unittest.TestCase,), {})
    monkeypatch.setitem(sys.modules, "qt", qt_stub)
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", wrapper)
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", scripted)
    spec = importlib.util.spec_from_file_location("AttUMambaSegModuleFile", REPO / "AttUMambaSeg" / "AttUMambaSeg.py")
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


@pytest.fixture
def scene():
    """A MRML scene set up as the Slicer application sets up ``slicer.mrmlScene``."""
    from mrml_helpers import headless_scene

    mrml = headless_scene()
    yield mrml
    mrml.Clear(True)


@pytest.fixture
def study_nodes(scene, tmp_path):
    """The tiny study's CT and PET as Slicer-loaded volume nodes, and their files."""
    import SimpleITK as sitk
    from mrml_helpers import load_volume
    from tiny_model import small_study

    ct, pet = small_study()
    sitk.WriteImage(ct, str(tmp_path / "ct.nrrd"))
    sitk.WriteImage(pet, str(tmp_path / "pet.nrrd"))
    return (load_volume(scene, tmp_path / "ct.nrrd", "CT"), load_volume(scene, tmp_path / "pet.nrrd", "PET"),
            tmp_path / "ct.nrrd", tmp_path / "pet.nrrd")


TOKEN = "slicer-logic-token"


@pytest.fixture(scope="module")
def lesion_backend(tmp_path_factory):
    """The real backend on loopback with the tiny model biased to call every voxel lesion."""
    from attumamba.server import Limits
    from loopback import tiny_model_backend

    with tiny_model_backend(tmp_path_factory.mktemp("models"), TOKEN, Limits(), bias_lesion=20.0) as url:
        yield url


@pytest.fixture
def client(lesion_backend, logic):
    from AttUMambaSegLib.logic.client import BackendClient

    return BackendClient(lesion_backend, TOKEN)


def handmade_labels(reference):
    """Three lesions of known shape on the CT grid: a box (1), a ball (2), a small cube (3)."""
    import numpy as np
    import SimpleITK as sitk

    array = np.zeros(reference.GetSize()[::-1], np.uint16)
    array[5:11, 5:13, 5:17] = 1
    k, j, i = np.indices(array.shape)
    array[(k - 22) ** 2 + (j - 24) ** 2 + (i - 24) ** 2 <= 36] = 2
    array[30:33, 8:11, 30:33] = 3
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


@pytest.fixture
def handmade(client, study_nodes, tmp_path):
    """The handmade lesions measured by the real backend: what a finished job hands to the Slicer side."""
    from types import SimpleNamespace

    import SimpleITK as sitk

    ct_node, pet_node, ct_file, pet_file = study_nodes
    labels = handmade_labels(sitk.ReadImage(str(ct_file)))
    sitk.WriteImage(labels, str(tmp_path / "lesions.nrrd"), useCompression=True)
    study = client.upload_study(ct_file, pet_file)
    report = client.measure(study["study_id"], tmp_path / "lesions.nrrd")
    return SimpleNamespace(ct=ct_node, pet=pet_node, labelmap=tmp_path / "lesions.nrrd", image=labels,
                           labels=sitk.GetArrayFromImage(labels), report=report, study_id=study["study_id"])


@pytest.fixture
def handmade_result(handmade, scene, logic):
    """The handmade lesions turned into MRML nodes (segments, RECIST lines, table) by ``build_result``."""
    import importlib

    return importlib.import_module("AttUMambaSegLib.logic.results").build_result(
        scene, handmade.ct, handmade.labelmap, handmade.report, pet_node=handmade.pet, study_id=handmade.study_id)


@pytest.fixture
def study_files(tmp_path):
    """The small test study written as ``ct.nrrd`` and ``pet.nrrd`` (what the module uploads)."""
    import SimpleITK as sitk
    from tiny_model import small_study

    ct, pet = small_study()
    sitk.WriteImage(ct, str(tmp_path / "ct.nrrd"))
    sitk.WriteImage(pet, str(tmp_path / "pet.nrrd"))
    return tmp_path / "ct.nrrd", tmp_path / "pet.nrrd"
