"""The Results section: the lesion table of the selected segmentation, centring on a lesion, re-measuring, export.

The table shows the report stored on the segmentation node (the same numbers as its lesion
table node): the primary columns, so that it fits the module panel; right-clicking it shows
or hides the others. Clicking a row centres the slice views on that lesion's RECIST long axis
and shows the labels of its lines only.
Update measurements runs on the backend while the GUI stays free (stepped from the module's
timer by :meth:`ResultsPanel.poll`; the button cancels meanwhile). Exporting never replaces a
file without asking.
"""

import importlib
import os

import qt
import slicer
from slicer.i18n import tr as _

from .backend_panel import confirmPlainHttp, saveSetting, setting
from .dicom_export_panel import DicomExportPanel


class ResultsPanel:
    """``segmentation()`` gives the selected lesion segmentation node (or None); ``changed()`` is called
    when re-measuring starts or ends, ``wake()`` when there is something for :meth:`poll` to step."""

    def __init__(self, ui, logic, segmentation, changed, wake):
        self.ui, self.logic, self.segmentation, self.changed, self.wake = ui, logic, segmentation, changed, wake
        self.shown = None
        self.measuring = None  # the Measuring in progress
        self.ui.exportDirectoryButton.directory = setting("ExportFolder", os.path.expanduser("~"))
        self.ui.lesionTableWidget.cellClicked.connect(self.onLesionClicked)
        self.columnActions = self._addColumnActions()
        self.ui.updateMeasurementsButton.clicked.connect(self.onUpdateMeasurements)
        self.ui.exportButton.clicked.connect(self.onExport)
        self.dicomExport = DicomExportPanel(ui, logic, segmentation, changed, wake)  # Export DICOM SEG + SR

    def _logic(self, name):
        return importlib.import_module(f"{self.logic.package.__name__}.{name}")

    def _addColumnActions(self):
        """One checkable action per column in the table's right-click menu; the primary columns start checked."""
        table = self.ui.lesionTableWidget
        table.contextMenuPolicy = qt.Qt.ActionsContextMenu
        view, actions = self._logic("lesion_view"), []
        for column, (header, shown) in enumerate(zip(view.headers(), view.column_shown())):
            action = qt.QAction(header.replace("\n", " "), table)
            action.checkable = True
            action.checked = shown
            action.toggled.connect(lambda on, column=column: table.setColumnHidden(column, not on))
            table.addAction(action)
            actions.append(action)
        return actions

    def updateButtons(self, segmenting, connected):
        measuring = self.measuring is not None
        hasResult = not segmenting and not measuring and not self.dicomExport.busy and self.segmentation() is not None
        button = self.ui.updateMeasurementsButton
        button.text = _("Cancel") if measuring else _("Update measurements")
        button.enabled = measuring or (hasResult and connected)
        button.toolTip = _("Stop waiting for the measurements; the table stays as it was.") if measuring else (
            _("Measure the segments as they are now (after editing them in Segment Editor)."))
        self.ui.exportButton.enabled = hasResult
        self.dicomExport.updateButtons(hasResult, connected)

    def show(self, force=False):
        """Fill the table and the totals from the selected segmentation (only if it changed, unless forced)."""
        node = self.segmentation()
        if node is self.shown and not force:
            return
        self.shown = node
        table = self.ui.lesionTableWidget
        headers, tooltips, rows, totals = self.logic.lesionTable(node)
        table.clear()
        table.setColumnCount(len(headers))
        table.setHorizontalHeaderLabels(headers)
        for column, tooltip in enumerate(tooltips):
            table.horizontalHeaderItem(column).setToolTip(tooltip)
        table.setRowCount(len(rows))
        for rowIndex, row in enumerate(rows):
            for column, text in enumerate(row.cells):
                item = qt.QTableWidgetItem(text)
                item.setData(qt.Qt.UserRole, row.lesion_id)
                table.setItem(rowIndex, column, item)
        for column, action in enumerate(self.columnActions):
            table.setColumnHidden(column, not action.checked)
        table.resizeColumnsToContents()
        self.ui.totalsLabel.text = totals

    def onLesionClicked(self, row, column):
        item = self.ui.lesionTableWidget.item(row, 0)
        node = self.segmentation()
        if item is None or node is None:
            return
        with slicer.util.tryWithErrorDisplay(_("Cannot show this lesion.")):
            lesionId = int(item.data(qt.Qt.UserRole))
            self._logic("results").show_lesion_labels(node, lesionId)
            r, a, s = self.logic.lesionFocus(node, lesionId)
            slicer.modules.markups.logic().JumpSlicesToLocation(r, a, s, True)

    def onUpdateMeasurements(self):
        if self.measuring is not None:
            self.cancel()
            return
        if not confirmPlainHttp(self.logic.client):
            return
        with slicer.util.tryWithErrorDisplay(_("Could not update the measurements."), waitCursor=True):
            self.measuring = self.logic.startMeasuring(self.segmentation())
            self.ui.stageLabel.text = _("Measuring on the backend...")
            self.changed()
            self.wake()

    def poll(self):
        """Step the re-measuring and the DICOM export going on; True while either goes on."""
        exporting = self.dicomExport.poll()
        if self.measuring is None or self.measuring.step():
            return self.measuring is not None or exporting
        measuring, self.measuring = self.measuring, None
        if measuring.error is not None:
            self.ui.stageLabel.text = _("Measuring failed.")
            slicer.util.errorDisplay(_("Could not update the measurements: {error}").format(error=measuring.error))
        else:
            self.ui.stageLabel.text = _("Measurements updated.")
            self.show(force=True)
        self.changed()
        return exporting

    def cancel(self):
        """Stop waiting for a re-measuring (the user, a scene closing) and stop a DICOM export; nothing changes."""
        self.dicomExport.cancel()
        if self.measuring is not None:
            self.measuring.cancel()
            self.measuring = None
            self.ui.stageLabel.text = _("Measuring cancelled; the table is unchanged.")
            self.changed()

    def onExport(self):
        folder = self.ui.exportDirectoryButton.directory
        saveSetting("ExportFolder", folder)
        existing = self.logic.existingExportFiles(folder)
        if existing and not slicer.util.confirmOkCancelDisplay(
                _("These files exist already. Overwrite them?") + "\n\n" + "\n".join(existing),
                windowTitle=_("Export")):
            return
        with slicer.util.tryWithErrorDisplay(_("Could not export the result."), waitCursor=True):
            files = self.logic.exportResult(self.segmentation(), folder, overwrite=bool(existing))
            self.ui.stageLabel.text = _("Exported to {folder}: {files}").format(
                folder=folder, files=", ".join(os.path.basename(str(path)) for path in files.values()))
