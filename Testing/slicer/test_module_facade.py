"""The module file's Logic facade on slicer-core: the scenario of the self-test, minus the GUI.

Slicer's GUI cannot exist here, so the three things the module file imports from it
(``qt``, ``slicer.ScriptedLoadableModule``, ``slicer.parameterNodeWrapper``) are replaced by
empty stand-ins; everything the facade does (the Logic package, MRML, the real backend on
loopback) is real (the stand-ins: conftest's ``module`` fixture). The Widget's panels run on
stand-in widgets in test_widgets_panels.py; the Widget itself is checked statically
(test_module_files.py) and by the self-test inside Slicer.
"""

from __future__ import annotations

import importlib
import sys

import pytest


@pytest.fixture
def synthetic(scene, tmp_path, logic):
    """The self-test's synthetic study, loaded as a user would have it (named CT and PET)."""
    from mrml_helpers import load_volume

    paths = importlib.import_module("AttUMambaSegLib.logic.sample").write_synthetic_study(tmp_path)
    return [load_volume(scene, paths[name], name) for name in ("CT", "PET")]


def test_the_logic_package_is_shared_with_the_module(module, logic):
    assert module.loadLogicPackage() is logic
    assert module.logicModule("run").__name__ == "AttUMambaSegLib.logic.run"


def test_options_reach_the_run(module, client, synthetic):
    ct, pet = synthetic
    facade = module.AttUMambaSegLogic()
    with pytest.raises(ValueError, match="No backend: start one or connect"):
        facade.startSegmentation(ct, pet)
    facade.client = client
    run = facade.startSegmentation(ct, pet, model="", device="auto", tta=True, reference="PET", minVolumeMl=0.5)
    assert (run.model, run.device, run.tta) == (None, None, True)
    assert run.options == {"reference": "pet", "min_volume_ml": 0.5}
    assert run.scene is ct.GetScene() and run.replace is None
    run.cancel()
    assert facade.startSegmentation(ct, pet, device="cpu", model="tiny").device == "cpu"


@pytest.mark.slow
def test_self_test_scenario(module, lesion_backend, synthetic, scene, tmp_path):
    from conftest import TOKEN

    ct, pet = synthetic
    facade = module.AttUMambaSegLogic()
    assert facade.preselectInputs(scene=scene) == (ct, pet)
    assert facade.connect(lesion_backend, TOKEN).url == lesion_backend

    result = facade.segment(ct, pet, model="tiny", reference="PET", timeout_s=300)
    lesions = result.report["lesions"]
    assert len(lesions) == 1  # the biased tiny model calls every voxel lesion
    assert lesions[0]["voxels"] == 52 * 40 * 30  # on the PET grid, as asked
    geometry = importlib.import_module("AttUMambaSegLib.logic.segments").reference_geometry(result.segmentation)
    assert geometry.GetDimensions() == (52, 40, 30)  # edits and re-measurements stay on that grid
    assert result.segmentation.GetSegmentation().GetNumberOfSegments() == len(lesions)
    assert result.table.GetNumberOfRows() == len(lesions)
    assert sorted(result.lines) == [(1, "long"), (1, "short")]
    assert all(line.GetNumberOfControlPoints() == 2 for line in result.lines.values())
    headers, tooltips, rows, totals = facade.lesionTable(result.segmentation)
    assert len(headers) == len(tooltips) == len(rows[0].cells) and [row.lesion_id for row in rows] == [1]
    assert totals.startswith("1 lesion;")
    assert facade.lesionTable(None)[2:] == ([], "")
    assert len(facade.lesionFocus(result.segmentation, 1)) == 3

    again = facade.segment(ct, pet, model="tiny", timeout_s=300)  # never lose work: a new segmentation
    assert again.segmentation is not result.segmentation
    assert result.segmentation.GetSegmentation().GetNumberOfSegments() == 1
    replaced = facade.segment(ct, pet, model="tiny", replace=again.segmentation, timeout_s=300)
    assert replaced.segmentation is again.segmentation and replaced.table is again.table

    remeasured = facade.updateMeasurements(result.segmentation).report["lesions"]
    assert [lesion["voxels"] for lesion in remeasured] == [52 * 40 * 30]
    assert facade.existingExportFiles(tmp_path / "out") == []
    files = facade.exportResult(result.segmentation, tmp_path / "out")
    assert sorted(facade.existingExportFiles(tmp_path / "out")) == sorted(str(p) for p in files.values())
    with pytest.raises(FileExistsError):
        facade.exportResult(result.segmentation, tmp_path / "out")
    facade.exportResult(result.segmentation, tmp_path / "out", overwrite=True)


def test_a_batch_through_the_facade_opens_on_its_reference_grid(module, lesion_backend, scene, tmp_path):
    import SimpleITK as sitk
    from conftest import TOKEN
    from tiny_model import small_study

    (tmp_path / "in").mkdir()
    for image, kind in zip(small_study(), ("ct", "pet")):
        sitk.WriteImage(image, str(tmp_path / "in" / f"solo_{kind}.nii.gz"))
    facade = module.AttUMambaSegLogic()
    with pytest.raises(ValueError, match="No backend: start one or connect"):
        facade.startBatch(str(tmp_path / "in"), str(tmp_path / "out"))
    facade.connect(lesion_backend, TOKEN)
    batch = facade.startBatch(str(tmp_path / "in"), str(tmp_path / "out"), model="tiny", device="auto",
                              reference="PET", minVolumeMl=0.5)
    assert [study["state"] for study in batch.wait(300)["studies"]] == ["done"]

    opened = facade.openBatchStudy(batch.batch_id, "solo", scene=scene).wait()
    segmentation = opened.result.segmentation
    assert opened.result.report["options"]["reference"] == "pet"
    geometry = importlib.import_module("AttUMambaSegLib.logic.segments").reference_geometry(segmentation)
    assert geometry.GetDimensions() == (20, 20, 20)  # the PET's grid, as asked: edits stay on it
    assert [lesion["voxels"] for lesion in facade.updateMeasurements(segmentation).report["lesions"]] == [20 ** 3]


def test_reload_reads_the_library_again(module, logic):
    """*Reload* forgets AttUMambaSegLib, so the next import runs the edited files, not the cached ones."""
    before = module.logicModule("run")
    cached = {name: mod for name, mod in sys.modules.items() if name.startswith("AttUMambaSegLib")}
    widget = module.AttUMambaSegWidget.__new__(module.AttUMambaSegWidget)
    reloaded = []
    module.ScriptedLoadableModuleWidget.onReload = lambda self: reloaded.append(self)
    try:
        widget.onReload()
        assert reloaded == [widget]
        assert not any(name.startswith("AttUMambaSegLib") for name in sys.modules)
        after = module.logicModule("run")
        assert after is not before and after.__file__ == before.__file__
        assert after.__file__.endswith("AttUMambaSegLib/logic/run.py".replace("/", __import__("os").sep))
    finally:   # the other tests keep the classes they imported
        sys.modules.update(cached)
