"""Pre-selecting CT and PET among the loaded volumes: DICOM modality, units, then names."""

from __future__ import annotations

import importlib

import pytest
import slicer


def _inputs():
    return importlib.import_module("AttUMambaSegLib.logic.inputs")


@pytest.mark.parametrize(("name", "kind"), [
    ("CT", "CT"), ("CTres", "CT"), ("ct_on_pet_grid", None), ("WholeBodyCT", "CT"), ("3: CT WB 3.0 B30f", "CT"),
    ("PET", "PET"), ("PT", "PET"), ("SUV", "PET"), ("SUVbw", "PET"), ("PET AC", "PET"), ("WB_PET", "PET"),
    ("PET_CT", None), ("PET/CT fused", None), ("MR T1", None), ("lesions", None), ("abstract", None), ("", None),
])
def test_name_kind(logic, name, kind):
    assert _inputs().name_kind(name) == kind


def test_modality_beats_units_and_units_beat_the_name(logic):
    clues = _inputs().VolumeClues
    kind = _inputs().volume_kind
    assert kind(clues(None, name="PET", modality="CT")) == "CT"
    assert kind(clues(None, name="CT", modality="PT")) == "PET"
    assert kind(clues(None, name="CT", modality="MR")) is None  # another modality is neither
    assert kind(clues(None, name="CT", units="{SUVbw}g/ml")) == "PET"
    assert kind(clues(None, name="series 3", units="[hnsf'U]")) == "CT"
    assert kind(clues(None, name="series 3")) is None


def test_newest_pet_and_a_ct_of_its_study(logic):
    clues = _inputs().VolumeClues
    volumes = [clues("ct1", "CT", study=1), clues("pet1", "PET", study=1), clues("ct2", "CT", study=2),
               clues("other", "MR brain"), clues("pet2", "PET", study=2), clues("ct1b", "CTres", study=1)]
    assert _inputs().pick_inputs(volumes) == ("ct2", "pet2")
    assert _inputs().pick_inputs(volumes[:2] + volumes[5:]) == ("ct1b", "pet1")
    assert _inputs().pick_inputs([clues("ct", "CT", study=1), clues("pet", "PET", study=2)]) == ("ct", "pet")
    assert _inputs().pick_inputs([clues("a", "volume"), clues("b", "PET")]) == (None, "b")
    assert _inputs().pick_inputs([]) == (None, None)


def test_preselect_reads_the_scene(scene, logic):
    def volume(name, cls="vtkMRMLScalarVolumeNode"):
        node = scene.AddNewNodeByClass(cls, name)
        hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
        if not hierarchy.GetItemByDataNode(node):
            hierarchy.CreateItem(hierarchy.GetSceneItemID(), node)
        return node

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    ct = volume("3: WB 3.0 B30f")  # a DICOM series name that says nothing; its modality does
    hierarchy.SetItemAttribute(hierarchy.GetItemByDataNode(ct), "DICOM.Modality", "CT")
    pet = volume("4: PET WB")
    volume("CT labels", "vtkMRMLLabelMapVolumeNode")  # a labelmap is no CT
    hidden = volume("CT hidden")
    hidden.SetHideFromEditors(True)
    assert _inputs().preselect(scene) == (ct, pet)

    pet.SetAttribute("DICOM.Modality", "CT")  # the node's own attribute is read too
    assert _inputs().preselect(scene) == (pet, None)


def test_preselect_keeps_what_the_user_chose(scene, logic):
    ct = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    pet = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "PET")
    mine = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "my volume")
    preselect = _inputs().preselect
    assert preselect(scene) == (ct, pet)
    assert preselect(scene, ct=mine) == (mine, pet)
    assert preselect(scene, pet=mine) == (ct, mine)
    assert preselect(scene, ct=pet) == (pet, None)  # never one volume as both
    assert preselect(scene, ct=mine, pet=ct) == (mine, ct)
