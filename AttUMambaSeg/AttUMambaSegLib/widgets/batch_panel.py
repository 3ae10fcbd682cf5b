"""The Batch section: segment every study of a folder on the backend, watch each study, open a finished one.

The folders are paths on the backend's computer (the same as here for a local backend); the
batch uses the model, device and options chosen for single studies. Nothing here waits: the
module's timer calls :meth:`BatchPanel.poll`, which looks at the batch (its status requests run
on a worker thread) and at a study being opened (downloaded on a worker thread, its nodes made
here once the files are in). The folders are kept in Slicer's settings.
"""

import qt
import slicer
from slicer.i18n import tr as _

from .backend_panel import confirmPlainHttp, saveSetting, setting


class BatchPanel:
    """``parameterNode()`` gives the module's parameter node (or None), ``connected()`` whether a
    checked backend is in use, ``wake()`` is called when there is something for :meth:`poll` to watch."""

    def __init__(self, ui, logic, parameterNode, connected, wake):
        self.ui, self.logic, self.parameterNode, self.connected, self.wake = ui, logic, parameterNode, connected, wake
        self.run = None  # the BatchRun shown; kept once finished so that its studies can be opened
        self.shown = None  # the (status, error) of the batch the section shows
        self.opening = None  # the StudyOpening in progress

        for lineEdit, key in ((self.ui.batchInputPathLineEdit, "BatchInputFolder"),
                              (self.ui.batchOutputPathLineEdit, "BatchOutputFolder")):
            lineEdit.currentPath = setting(key, "")
            lineEdit.currentPathChanged.connect(lambda path, key=key: (saveSetting(key, path), self.updateButtons()))
        self.ui.batchRunButton.clicked.connect(self.onRunButton)
        self.ui.batchOpenButton.clicked.connect(self.onOpen)
        self.ui.batchTableWidget.itemSelectionChanged.connect(self.updateButtons)
        self.ui.batchTableWidget.cellDoubleClicked.connect(lambda row, column: self.onOpen())
        self.ui.batchProgressBar.hide()
        self.updateButtons()

    def updateButtons(self):
        running = self.run is not None and not self.run.finished
        folders = self.ui.batchInputPathLineEdit.currentPath and self.ui.batchOutputPathLineEdit.currentPath
        missing = "" if folders else _("Choose the study folder and the output folder.")
        if not self.connected():
            missing = _("Start or connect to a backend and test the connection (Backend).")
        self.ui.batchRunButton.text = _("Cancel batch") if running else _("Run batch")
        self.ui.batchRunButton.enabled = (running and not self.run.cancelling) or (not running and not missing)
        self.ui.batchRunButton.toolTip = _("Stop the batch; the studies it finished are kept.") if running else (
            missing or _("Segment every study of the folder with the model and options above."))
        self.ui.batchOpenButton.enabled = self.opening is None and bool(self.selectedStudy()) and self.connected()

    def selectedStudy(self):
        """The selected study's ID if it has results, else ''."""
        table = self.ui.batchTableWidget
        item = table.item(table.currentRow(), 0) if table.selectedItems() else None
        return (item.data(qt.Qt.UserRole) or "") if item is not None else ""

    # --- running -----------------------------------------------------------------------------------
    def onRunButton(self):
        if self.run is not None and not self.run.finished:
            self.run.cancel()
            self.show()
            return
        p = self.parameterNode()
        with slicer.util.tryWithErrorDisplay(_("Could not start the batch."), waitCursor=True):
            self.run = self.logic.startBatch(
                self.ui.batchInputPathLineEdit.currentPath, self.ui.batchOutputPathLineEdit.currentPath,
                resume=self.ui.batchResumeCheckBox.checked, model=p.model, device=p.device, tta=p.tta,
                reference=p.reference, minVolumeMl=p.minVolumeMl)
            self.ui.batchTableWidget.setRowCount(0)
            self.ui.batchProgressBar.show()
            self.show()
            self.wake()

    def poll(self):
        """Look at the batch and at a study being opened; True while either goes on."""
        if self.run is not None and not self.run.finished:
            self.run.poll()
            if (self.run.status, self.run.error) != self.shown:
                self.show()
            if self.run.finished:
                self.onBatchFinished()
        if self.opening is not None and not self.opening.step():
            opening, self.opening = self.opening, None
            self.onOpened(opening)
        return (self.run is not None and not self.run.finished) or self.opening is not None

    def show(self):
        """The batch's status line, progress and one row per study, updated in place (the selection stays)."""
        self.shown = (self.run.status, self.run.error)
        self.ui.batchStatusLabel.text = self.run.summary()
        self.ui.batchProgressBar.value = round(100 * float(self.run.status.get("progress") or 0.0))
        table = self.ui.batchTableWidget
        rows = self.run.rows()
        table.setRowCount(len(rows))
        for rowIndex, (studyId, openable, cells) in enumerate(rows):
            for column, text in enumerate(cells):
                item = table.item(rowIndex, column)
                if item is None:
                    item = qt.QTableWidgetItem()
                    table.setItem(rowIndex, column, item)
                item.setText(text)
            table.item(rowIndex, 0).setData(qt.Qt.UserRole, studyId if openable else "")
        table.resizeColumnsToContents()
        self.updateButtons()

    def onBatchFinished(self):
        self.ui.batchProgressBar.hide()
        if self.run.state == "failed":
            slicer.util.errorDisplay(_("The batch failed: {message}").format(
                message=self.run.status.get("message") or _("no reason given")))

    # --- opening a finished study ------------------------------------------------------------------
    def onOpen(self):
        studyId = self.selectedStudy()
        if not studyId or self.opening is not None or not confirmPlainHttp(self.logic.client):
            return
        with slicer.util.tryWithErrorDisplay(_("Could not open the study."), waitCursor=True):
            self.opening = self.logic.openBatchStudy(self.run.batch_id, studyId)
            self.ui.batchStatusLabel.text = _("Opening {studyId}: loading its volumes and lesions ...").format(
                studyId=studyId)
            self.updateButtons()
            self.wake()

    def onOpened(self, opening):
        if opening.error is not None:
            self.ui.batchStatusLabel.text = self.run.summary()
            slicer.util.errorDisplay(_("Could not open {study_id}: {error}").format(
                study_id=opening.study_id, error=opening.error))
        else:
            opened = opening.result
            parameterNode = self.parameterNode()
            if parameterNode is not None:  # the Inputs and Results sections show the opened study
                parameterNode.ct, parameterNode.pet = opened.ct, opened.pet
                parameterNode.result = opened.result.segmentation
            slicer.util.setSliceViewerLayers(background=opened.ct, foreground=opened.pet, foregroundOpacity=0.4,
                                             fit=True)
            count = len(opened.result.report["lesions"])
            self.ui.batchStatusLabel.text = _("Opened {study_id}: lesions found: {count}.").format(
                study_id=opened.study_id, count=count)
        self.updateButtons()
