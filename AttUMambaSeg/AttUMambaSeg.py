"""AttUMambaSeg: whole-body PET/CT lesion segmentation with Mamba U-Nets.

This file is the thin Slicer layer: the module description, a Widget that only wires the UI
(its sections are wired by the panels in ``AttUMambaSegLib/widgets``), a Logic facade for the
Widget and for scripts, and the self-test. Everything that does work lives in
``AttUMambaSegLib/logic`` (no Qt,
testable on slicer-core) or in the backend process (torch, models), which Slicer never imports.
"""

import importlib
import os
import sys
import unittest
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

LIBRARY = "AttUMambaSegLib"   # this module's package; its name is unique on Slicer's sys.path
DEFAULT_URL = "http://127.0.0.1:8765"
DOCUMENTATION_URL = "https://github.com/attumambaseg/AttUMambaSeg#using-it-in-3d-slicer"


def logicModule(name):
    """One module of ``AttUMambaSegLib/logic``, e.g. ``logicModule("run").SegmentationRun``."""
    return importlib.import_module(f"{LIBRARY}.logic.{name}")


def widgetsModule(name):
    """One module of ``AttUMambaSegLib/widgets`` (Qt helpers of the Widget)."""
    return importlib.import_module(f"{LIBRARY}.widgets.{name}")


def loadLogicPackage():
    """``AttUMambaSegLib.logic`` (the package the facade and scripts use)."""
    return importlib.import_module(f"{LIBRARY}.logic")


def unloadLibrary():
    """Forget every imported module of the library, so the next import reads the files again.

    *Reload* reloads only the module file; without this, Python's module cache would keep
    serving the library as it was when Slicer started."""
    for name in [name for name in sys.modules if name == LIBRARY or name.startswith(LIBRARY + ".")]:
        del sys.modules[name]


class AttUMambaSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("AttUMambaSeg")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = ["Segmentations", "Markups", "Tables", "SubjectHierarchy"]
        self.parent.contributors = ["AttUMambaSeg Team (AttUMambaSeg open-source project)"]
        self.parent.helpText = _(
            "Segments lesions in whole-body PET/CT with Mamba-based U-Nets and reports per-lesion volume, "
            "SUV/SUL statistics and RECIST axes; compares a baseline with a follow-up (RECIST 1.1, PERCIST 1.0, "
            "Deauville). The models run in a separate backend process. "
            'See the <a href="{url}">documentation</a> for setting up the backend and using the module.'
        ).format(url=DOCUMENTATION_URL)
        self.parent.acknowledgementText = _(
            "Models follow Att-UMamba, U-Mamba, LightM-UNet, Mamba-AHNet and MPU-Net; training uses nnU-Net v2. "
            "Licensed under the Apache License 2.0."
        )


@parameterNodeWrapper
class AttUMambaSegParameterNode:
    """The user's choices, saved with the scene (the backend's address and token are not)."""

    ct: vtkMRMLScalarVolumeNode
    pet: vtkMRMLScalarVolumeNode
    model: str = ""
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    tta: bool = False
    reference: Annotated[str, Choice(["CT", "PET"])] = "CT"
    minVolumeMl: Annotated[float, WithinRange(0.0, 1000.0)] = 0.0
    replaceExisting: bool = False
    result: vtkMRMLSegmentationNode


class AttUMambaSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/AttUMambaSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = AttUMambaSegLogic()

        self.timer = qt.QTimer()
        self.timer.setInterval(100)
        self.timer.timeout.connect(self.onTick)
        parameterNode, connected = (lambda: self._parameterNode), (lambda: self.backendPanel.connected)
        self.backendPanel = widgetsModule("backend_panel").BackendPanel(
            self.ui, self.logic, parameterNode, self.updateButtons, self.timer.start)
        self.resultsPanel = widgetsModule("results_panel").ResultsPanel(
            self.ui, self.logic, lambda: self._parameterNode.result if self._parameterNode else None,
            self.updateButtons, self.timer.start)
        self.segmentPanel = widgetsModule("segment_panel").SegmentPanel(
            self.ui, self.logic, parameterNode, self.resultsPanel, connected, self.updateButtons, self.timer.start)
        self.batchPanel = widgetsModule("batch_panel").BatchPanel(
            self.ui, self.logic, parameterNode, connected, self.timer.start)
        self.responsePanel = widgetsModule("response_panel").ResponsePanel(self.ui, self.logic, self.timer.start)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onNodeAdded)
        self.initializeParameterNode()

    def cleanup(self):
        self.timer.stop()
        self.segmentPanel.cancel()
        self.resultsPanel.cancel()
        self.removeObservers()
        self.logic.stopBackend()

    def onReload(self):
        """Developer *Reload*: the library is read again too, not only this file."""
        unloadLibrary()
        ScriptedLoadableModuleWidget.onReload(self)

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        self.disconnectParameterNode()  # kept: a run going on records its result there

    def onSceneStartClose(self, caller, event):
        self.segmentPanel.cancel()  # its volumes are going away
        self.resultsPanel.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def onNodeAdded(self, caller, event, node):
        if node is not None and node.IsA("vtkMRMLScalarVolumeNode"):
            qt.QTimer.singleShot(0, self.preselectInputs)  # once loading has named and placed the node

    # --- parameter node ------------------------------------------------------------------------
    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        self.preselectInputs()

    def disconnectParameterNode(self):
        if self._parameterNode is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)

    def setParameterNode(self, parameterNode):
        self.disconnectParameterNode()
        self._parameterNode = parameterNode
        if self._parameterNode is not None:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self.onParameterNodeModified()

    def onParameterNodeModified(self, caller=None, event=None):
        self.updateButtons()
        self.resultsPanel.show()

    def preselectInputs(self):
        """Fill an empty CT or PET choice from the loaded volumes; a choice the user made stays."""
        p = self._parameterNode
        if p is not None and not (p.ct and p.pet):
            p.ct, p.pet = self.logic.preselectInputs(p.ct, p.pet)

    def updateButtons(self):
        self.segmentPanel.updateButtons()
        self.resultsPanel.updateButtons(segmenting=self.segmentPanel.run is not None, connected=self.backendPanel.connected)
        self.batchPanel.updateButtons()

    def onTick(self):
        """Step whatever goes on; none of the polls waits (their network work runs on worker threads)."""
        panels = (self.segmentPanel, self.backendPanel, self.batchPanel, self.resultsPanel, self.responsePanel)
        if not any([panel.poll() for panel in panels]):  # a list, not a generator: every panel is stepped
            self.timer.stop()


class AttUMambaSegLogic(ScriptedLoadableModuleLogic):
    """Facade over ``Logic/``: what the Widget does, callable from scripts.

    >>> logic = AttUMambaSegLogic()
    >>> logic.connect("http://127.0.0.1:8765")            # token from ~/.attumamba/token
    >>> result = logic.segment(ctNode, petNode)           # waits; the GUI uses startSegmentation
    >>> logic.updateMeasurements(result.segmentation)     # after editing the segments
    >>> batch = logic.startBatch("/data/cohort", "/data/out", model="..."); batch.wait()  # backend's folders
    >>> opened = logic.openBatchStudy(batch.batch_id, "patient01").wait()  # .ct, .pet, .result
    """

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.package = loadLogicPackage()
        self.client = None  # BackendClient of the backend in use
        self.backend = None  # ManagedBackend this logic started

    def getParameterNode(self):
        return AttUMambaSegParameterNode(super().getParameterNode())

    def preselectInputs(self, ct=None, pet=None, scene=None):
        """(CT, PET) volume nodes: those given, the missing ones picked by DICOM modality, units or name."""
        return logicModule("inputs").preselect(scene or slicer.mrmlScene, ct, pet)

    # --- backend -------------------------------------------------------------------------------
    def connect(self, url, token="", caFile=""):
        """Use a running backend (no token: a local backend's token file; caFile: a self-signed https one's)."""
        url = (url or "").strip() or DEFAULT_URL
        self.client = logicModule("connection").connect(url, token, caFile)
        return self.client

    def startBackend(self, python, device="auto"):
        """Start a backend from its Python environment on a free loopback port (returns at once)."""
        self.stopBackend()
        environment = slicer.util.startupEnvironment() if hasattr(slicer.util, "startupEnvironment") else None
        self.backend = logicModule("backend_process").ManagedBackend(python, device=device, env=environment)
        self.backend.start()
        return self.backend

    def useManagedBackend(self):
        self.client = self.backend.client()
        return self.client

    def stopBackend(self):
        if self.backend is not None:
            if self.client is not None and self.client.url == self.backend.url:
                self.client = None
            self.backend.stop()
            self.backend = None

    def requireClient(self):
        if self.client is None:
            raise ValueError("No backend: start one or connect to one (Backend section), then test the connection.")
        return self.client

    def checkConnectionInBackground(self):
        connection = logicModule("connection")
        return connection.in_background(connection.check_backend, self.requireClient())

    def modelChoices(self, models):
        return logicModule("connection").model_choices(models)

    def describeModel(self, model):
        return logicModule("connection").describe_model(model)

    # --- segmentation and results --------------------------------------------------------------
    def startSegmentation(self, ct, pet, model="", device="auto", tta=False, reference="CT", minVolumeMl=0.0,
                          replace=None, onProgress=None, name=None):
        """A SegmentationRun to drive with ``step()`` (GUI timer) or ``wait()``; makes a new
        segmentation unless ``replace`` names one."""
        scene = ct.GetScene() if ct is not None else slicer.mrmlScene
        return logicModule("run").SegmentationRun(
            self.requireClient(), scene, ct, pet, name=name, replace=replace, on_progress=onProgress,
            **self.jobSettings(model, device, tta, reference, minVolumeMl))

    @staticmethod
    def jobSettings(model="", device="auto", tta=False, reference="CT", minVolumeMl=0.0):
        """The GUI's choices as the backend wants them, for single studies and batches alike."""
        return {"model": model or None, "device": None if device == "auto" else device, "tta": tta,
                "options": {"reference": reference.lower(), "min_volume_ml": float(minVolumeMl)}}

    def segment(self, ct, pet, timeout_s=3600.0, **options):
        """Segment and wait (scripts, tests); the LesionResult."""
        return self.startSegmentation(ct, pet, **options).wait(timeout_s)

    # --- batches: folders on the backend's computer --------------------------------------------
    def startBatch(self, inputDir, outputDir, resume=False, **choices):
        """A BatchRun of every study in ``inputDir``, to ``poll()`` (GUI timer) or ``wait()``; ``choices``
        as for startSegmentation (model, device, tta, reference, minVolumeMl)."""
        return logicModule("batch").BatchRun(self.requireClient(), inputDir, outputDir, resume=resume,
                                             **self.jobSettings(**choices))

    def openBatchStudy(self, batchId, studyId, scene=None):
        """A StudyOpening of a finished study, to ``step()`` (GUI timer) or ``wait()``: its CT, PET and lesion
        result, which Update measurements re-measures on the backend like any result."""
        return logicModule("batch").StudyOpening(self.requireClient(), batchId, studyId, scene or slicer.mrmlScene)

    def startMeasuring(self, segmentationNode):
        """A Measuring of the segments as they are now, to ``step()`` (GUI timer) or ``wait()``."""
        return logicModule("measure").Measuring(self.requireClient(), segmentationNode)

    def updateMeasurements(self, segmentationNode):
        """Re-measure and wait (scripts); the refreshed LesionResult."""
        return self.startMeasuring(segmentationNode).wait()

    def existingExportFiles(self, folder):
        return [str(path) for path in logicModule("export").export_targets(folder, "lesions.nii.gz").values()
                if path.exists()]

    def exportResult(self, segmentationNode, folder, overwrite=False):
        return logicModule("export").export_result(segmentationNode, folder, overwrite=overwrite)

    def lesionReport(self, segmentationNode):
        return logicModule("results").LesionResult.of(segmentationNode).report

    def lesionTable(self, segmentationNode):
        """(headers, header tooltips, rows, totals line) of the results table; no rows for None."""
        view = logicModule("lesion_view")
        report = self.lesionReport(segmentationNode) if segmentationNode is not None else None
        return (view.headers(), view.header_tooltips(), view.lesion_rows(report or {}),
                view.totals_text(report) if report is not None else "")

    def lesionFocus(self, segmentationNode, lesionId):
        """The RAS point to centre the views on for a lesion (the middle of its long axis)."""
        return logicModule("lesion_view").lesion_focus_ras(self.lesionReport(segmentationNode), lesionId)


class AttUMambaSegTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer. The segmentation test needs a backend: set ATTUMAMBA_TEST_URL and
    ATTUMAMBA_TEST_TOKEN (and optionally ATTUMAMBA_TEST_MODEL) before starting Slicer."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        for test in (self.test_logic_package_is_ours, self.test_inputs_are_preselected,
                     self.test_segment_synthetic_study, self.test_widget):
            self.setUp()
            try:
                test()
            except unittest.SkipTest as reason:
                self.delayDisplay(f"Skipped {test.__name__}: {reason}")

    def test_logic_package_is_ours(self):
        package = AttUMambaSegLogic().package
        self.assertEqual(package.PACKAGE_ID, "AttUMambaSegLib.logic")
        self.assertTrue(package.__file__.startswith(os.path.dirname(os.path.abspath(__file__))))

    def test_inputs_are_preselected(self):
        ct, pet = logicModule("sample").add_synthetic_study(slicer.mrmlScene)  # named as a user's files
        self.assertEqual(AttUMambaSegLogic().preselectInputs(), (ct, pet))
        slicer.util.selectModule("AttUMambaSeg")
        slicer.app.processEvents()
        widget = slicer.modules.attumambaseg.widgetRepresentation().self()
        self.assertIs(widget.ui.ctSelector.currentNode(), ct)
        self.assertIs(widget.ui.petSelector.currentNode(), pet)

    def test_segment_synthetic_study(self):
        url = os.environ.get("ATTUMAMBA_TEST_URL", "")
        if not url:
            self.skipTest("no backend: set ATTUMAMBA_TEST_URL and ATTUMAMBA_TEST_TOKEN to a running "
                          "'attumamba-seg serve' before starting Slicer")
        ct, pet = logicModule("sample").add_synthetic_study(slicer.mrmlScene)
        logic = AttUMambaSegLogic()
        logic.connect(url, os.environ.get("ATTUMAMBA_TEST_TOKEN", ""))
        model = os.environ.get("ATTUMAMBA_TEST_MODEL", "")
        self.delayDisplay("Segmenting the synthetic study")
        result = logic.segment(ct, pet, model=model, timeout_s=1800)
        lesions = result.report["lesions"]
        self.assertGreaterEqual(len(lesions), 1, "the hot sphere was not found")
        self.assertEqual(result.segmentation.GetSegmentation().GetNumberOfSegments(), len(lesions))
        self.assertEqual(result.table.GetNumberOfRows(), len(lesions))
        self.assertEqual(len(result.lines), 2 * len(lesions))
        for line in result.lines.values():
            self.assertEqual(line.GetNumberOfControlPoints(), 2)
        sample = logicModule("sample")
        distances = [sum((float(a) - b) ** 2 for a, b in zip(lesion["centroid_lps"], sample.LESION_CENTRE_LPS)) ** 0.5
                     for lesion in lesions]
        self.assertLess(min(distances), sample.LESION_RADIUS_MM, "no lesion is centred on the hot sphere")
        self.assertEqual(len(logic.lesionTable(result.segmentation)[2]), len(lesions))

        self.delayDisplay("Segmenting again: a new segmentation, the first one kept")
        again = logic.segment(ct, pet, model=model, timeout_s=1800)
        self.assertIsNot(again.segmentation, result.segmentation)
        self.assertEqual(result.segmentation.GetSegmentation().GetNumberOfSegments(), len(lesions))
        self.delayDisplay("Test passed")

    def test_widget(self):
        """Testing/Python's widget test, from a source tree (an installed extension does not ship it)."""
        folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Testing", "Python")
        if not os.path.isdir(folder):
            self.skipTest("the widget test is in the source tree only (Testing/Python)")
        suite = unittest.defaultTestLoader.discover(folder, pattern="*WidgetTest.py", top_level_dir=folder)
        self.assertTrue(unittest.TextTestRunner(verbosity=2).run(suite).wasSuccessful())
