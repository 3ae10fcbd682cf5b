"""The Results section: the lesion table of the selected segmentation, centring on a lesion, re-measuring, export.

The table shows the report stored on the segmentation node (the same numbers as its lesion
table node); clicking a row centres the slice views on that lesion's RECIST long axis.
Exporting never replaces a file without asking.
"""

import os

import qt
import slicer

from .backend_panel import saveSetting, setting


class ResultsPanel:
    """``segmentation()`` gives the selected lesion segmentation node (or None)."""

    def __init__(self, ui, logic, segmentation):
        self.ui, self.logic, self.segmentation = ui, logic, segmentation
        self.shown = None
        self.ui.exportDirectoryButton.directory = setting("ExportFolder", os.path.expanduser("~"))
        self.ui.lesionTableWidget.cellClicked.connect(self.onLesionClicked)
        self.ui.updateMeasurementsButton.clicked.connect(self.onUpdateMeasurements)
        self.ui.exportButton.clicked.connect(self.onExport)

    def updateButtons(self, idle, connected):
        hasResult = idle and self.segmentation() is not None
        self.ui.updateMeasurementsButton.enabled = hasResult and connected
        self.ui.exportButton.enabled = hasResult

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
        table.resizeColumnsToContents()
        self.ui.totalsLabel.text = totals

    def onLesionClicked(self, row, column):
        item = self.ui.lesionTableWidget.item(row, 0)
        node = self.segmentation()
        if item is None or node is None:
            return
        with slicer.util.tryWithErrorDisplay("Cannot show this lesion."):
            r, a, s = self.logic.lesionFocus(node, int(item.data(qt.Qt.UserRole)))
            slicer.modules.markups.logic().JumpSlicesToLocation(r, a, s, True)

    def onUpdateMeasurements(self):
        with slicer.util.tryWithErrorDisplay("Could not update the measurements.", waitCursor=True):
            self.logic.updateMeasurements(self.segmentation())
            self.show(force=True)

    def onExport(self):
        folder = self.ui.exportDirectoryButton.directory
        saveSetting("ExportFolder", folder)
        existing = self.logic.existingExportFiles(folder)
        if existing and not slicer.util.confirmOkCancelDisplay(
                "These files exist already. Overwrite them?\n\n" + "\n".join(existing), windowTitle="Export"):
            return
        with slicer.util.tryWithErrorDisplay("Could not export the result.", waitCursor=True):
            files = self.logic.exportResult(self.segmentation(), folder, overwrite=bool(existing))
            self.ui.stageLabel.text = "Exported to " + folder + ": " + ", ".join(
                os.path.basename(str(path)) for path in files.values())
