"""The AttUMambaSeg panel driven inside a real Slicer, as a user drives it (SlicerNNUnet's WidgetTestCase style).

Run by ``ctest`` in an extension build (``py_AttUMambaSegWidgetTest``) and by the module's *Reload and
Test*. It presses the panel's buttons and lets the module's own timer do the work: a backend is
started by the module (``ATTUMAMBA_TEST_PYTHON``: the backend's Python, its environment or the
repository folder; it serves its installed models, the default one unless ``ATTUMAMBA_TEST_MODEL``
names another) or reached at ``ATTUMAMBA_TEST_URL`` with ``ATTUMAMBA_TEST_TOKEN``; without either
the tests are skipped. ``ATTUMAMBA_TEST_DICOM_DIR`` (a DICOM PET/CT study, e.g. written by
``attumamba-seg synth --format dicom``; the PET DICOM extension gives its PET in SUV) adds the
DICOM SEG + SR export and its import back into a temporary DICOM database.
"""

import importlib
import os
import shutil
import tempfile
import time
import unittest

import numpy as np
import slicer

MODULE = "AttUMambaSeg"
SEGMENT_TIMEOUT_S = float(os.environ.get("ATTUMAMBA_TEST_TIMEOUT_S", "1800"))


class AttUMambaSegWidgetTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not (os.environ.get("ATTUMAMBA_TEST_PYTHON") or os.environ.get("ATTUMAMBA_TEST_URL")):
            raise unittest.SkipTest("no backend: set ATTUMAMBA_TEST_PYTHON (the module starts one) or "
                                    "ATTUMAMBA_TEST_URL and ATTUMAMBA_TEST_TOKEN")
        slicer.mrmlScene.Clear()
        slicer.util.selectModule(MODULE)
        cls.widget = slicer.modules.attumambaseg.widgetRepresentation().self()
        cls.ui = cls.widget.ui
        cls.folder = tempfile.mkdtemp(prefix="attumamba-widget-test-")
        cls.connectBackend()

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "widget", None) is not None and cls.ui.stopBackendButton.enabled:
            cls.ui.stopBackendButton.click()
        shutil.rmtree(getattr(cls, "folder", ""), ignore_errors=True)

    @classmethod
    def connectBackend(cls):
        python = os.environ.get("ATTUMAMBA_TEST_PYTHON", "")
        if python:
            cls.ui.backendModeComboBox.currentIndex = 0
            cls.ui.backendPythonPathLineEdit.currentPath = python
            cls.ui.startBackendButton.click()
        else:
            cls.ui.backendModeComboBox.currentIndex = 1
            cls.ui.backendUrlLineEdit.text = os.environ["ATTUMAMBA_TEST_URL"]
            cls.ui.backendTokenLineEdit.text = os.environ.get("ATTUMAMBA_TEST_TOKEN", "")
            cls.ui.testConnectionButton.click()
        waitFor(lambda: cls.widget.backendPanel.connected, 300, "the backend to answer")
        model = os.environ.get("ATTUMAMBA_TEST_MODEL", "")
        if model:
            cls.ui.modelComboBox.currentIndex = cls.ui.modelComboBox.findData(model)
            assert cls.ui.modelComboBox.currentIndex >= 0, f"the backend has no model {model!r}"

    def setUp(self):
        slicer.mrmlScene.Clear()

    def test_1_the_sample_study_becomes_the_inputs(self):
        self.assertTrue(self.ui.loadSampleButton.enabled)
        self.ui.loadSampleButton.click()
        self.assertEqual(self.ui.loadSampleButton.text, "Cancel loading the sample")
        waitFor(lambda: self.widget.segmentPanel.sample.loading is None, 300, "the sample study")
        ct, pet = self.ui.ctSelector.currentNode(), self.ui.petSelector.currentNode()
        self.assertIsNotNone(ct, self.ui.stageLabel.text)
        self.assertTrue(ct.GetName().startswith("Sample ") and ct.GetName().endswith(" CT"))
        self.assertTrue(pet.GetName().startswith("Sample ") and pet.GetName().endswith(" PET"))
        self.assertTrue(self.ui.segmentButton.enabled)

    def test_2_segment_update_measurements_and_export(self):
        ct, pet = self.loadSelfTestStudy()
        self.ui.ctSelector.setCurrentNode(ct)
        self.ui.petSelector.setCurrentNode(pet)
        result = self.segment()
        lesions = self.widget.logic.lesionReport(result)["lesions"]
        self.assertEqual(self.ui.lesionTableWidget.rowCount, len(lesions))
        self.assertFalse(self.ui.exportDicomButton.enabled)  # the volumes did not come from DICOM
        self.assertIn("not loaded from Slicer's DICOM database", self.ui.exportDicomButton.toolTip)

        segmentId = result.GetSegmentation().GetSegmentIdBySegmentName("Lesion 1")
        voxels = slicer.util.arrayFromSegmentBinaryLabelmap(result, segmentId, ct)
        before = int(np.count_nonzero(voxels))
        kept = voxels.copy()
        kept[:, :, : int(np.median(np.nonzero(voxels)[2]))] = 0  # erase the lesion's left part, as an edit would
        slicer.util.updateSegmentBinaryLabelmapFromArray(kept, result, segmentId, ct)
        self.ui.updateMeasurementsButton.click()
        waitFor(lambda: self.widget.resultsPanel.measuring is None, 300, "the measurements")
        self.assertEqual(self.ui.stageLabel.text, "Measurements updated.")
        after = self.widget.logic.lesionReport(result)["lesions"][0]["voxels"]
        self.assertLess(after, before)

        self.ui.exportDirectoryButton.directory = self.folder
        self.ui.exportButton.click()
        for name in ("lesions.nii.gz", "lesions.seg.nrrd", "lesions.csv", "lesions.json"):
            self.assertTrue(os.path.isfile(os.path.join(self.folder, name)), name)

    def test_3_dicom_seg_and_sr_load_back(self):
        folder = os.environ.get("ATTUMAMBA_TEST_DICOM_DIR", "")
        if not folder:
            self.skipTest("set ATTUMAMBA_TEST_DICOM_DIR to a DICOM PET/CT study to test the DICOM export")
        from DICOMLib import DICOMUtils

        with DICOMUtils.TemporaryDICOMDatabase() as database:
            DICOMUtils.importDicom(folder, database)
            DICOMUtils.loadPatientByUID(database.patients()[0])
            waitFor(lambda: self.ui.ctSelector.currentNode() and self.ui.petSelector.currentNode(), 30, "the inputs")
            result = self.segment()
            self.assertTrue(self.ui.exportDicomButton.enabled, self.ui.exportDicomButton.toolTip)
            self.ui.exportDirectoryButton.directory = os.path.join(self.folder, "dicom")
            answer, slicer.util.confirmYesNoDisplay = slicer.util.confirmYesNoDisplay, lambda *a, **k: True
            try:
                self.ui.exportDicomButton.click()
                waitFor(lambda: not self.widget.resultsPanel.dicomExport.busy, 300, "the DICOM export")
            finally:
                slicer.util.confirmYesNoDisplay = answer
            self.assertIn("imported them into the DICOM database", self.ui.stageLabel.text)
            series = {database.fileValue(database.filesForSeries(uid)[0], "0008,0060"): uid  # Modality
                      for study in database.studiesForPatient(database.patients()[0])
                      for uid in database.seriesForStudy(study)}
            self.assertTrue({"SEG", "SR"} <= set(series), series)
            loaded = DICOMUtils.loadSeriesByUID([series["SEG"]])
            segmentations = [slicer.mrmlScene.GetNodeByID(i) for i in loaded
                             if slicer.mrmlScene.GetNodeByID(i).IsA("vtkMRMLSegmentationNode")]
            self.assertEqual(segmentations[0].GetSegmentation().GetNumberOfSegments(),
                             result.GetSegmentation().GetNumberOfSegments())

    # --- helpers -----------------------------------------------------------------------------------
    def loadSelfTestStudy(self):
        """The module's small synthetic study (one hot sphere): a CPU backend segments it in seconds."""
        return importlib.import_module("AttUMambaSegLib.logic.sample").add_synthetic_study(slicer.mrmlScene)

    def segment(self):
        """Press Segment, wait for the result, check its segments, table and RECIST lines; the segmentation."""
        self.assertTrue(self.ui.segmentButton.enabled, self.ui.segmentButton.toolTip)
        self.ui.segmentButton.click()
        self.assertEqual(self.ui.segmentButton.text, "Cancel")
        waitFor(lambda: self.widget.segmentPanel.run is None, SEGMENT_TIMEOUT_S, "the segmentation")
        self.assertTrue(self.ui.stageLabel.text.startswith("Done"), self.ui.stageLabel.text)
        result = self.ui.resultSelector.currentNode()
        lesions = self.widget.logic.lesionReport(result)["lesions"]
        self.assertGreaterEqual(len(lesions), 1)
        self.assertEqual(result.GetSegmentation().GetNumberOfSegments(), len(lesions))
        lines = slicer.util.getNodesByClass("vtkMRMLMarkupsLineNode")
        self.assertEqual(len(lines), 2 * len(lesions))
        self.assertTrue(all(line.GetNumberOfControlPoints() == 2 for line in lines))
        return result


def waitFor(condition, timeout_s, what):
    """Let Slicer's event loop (and so the module's timer) run until ``condition()`` holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        slicer.app.processEvents()
        time.sleep(0.05)
