"""The Response section: baseline vs follow-up result -> categories, lesion-group table, reference ROIs.

Compare starts a ``ResponseAssessment`` (Logic/response.py) that the module's timer steps
through :meth:`ResponsePanel.poll`; the button cancels meanwhile and the scene stays as it was.
Once built, the reader's changes (a Target box, a dragged reference ROI, an edited segment) are
watched and, once they have settled, assessed again in place with the same registration.
"""

import importlib

import qt
import slicer
from slicer.i18n import tr as _

from .backend_panel import confirmPlainHttp

LABELS = ("recistLabel", "percistLabel", "deauvilleLabel")


class ResponsePanel:
    """``wake()`` is called when there is something for :meth:`poll` to step."""

    def __init__(self, ui, logic, wake):
        self.ui, self.logic, self.wake = ui, logic, wake
        self.assessment = None   # the ResponseAssessment in progress
        self.result = None       # the ResponseResult shown
        self.watch = None        # the ReaderWatch of the result shown
        self.filling = False     # the table is being filled: its item changes are not the reader's
        ui.compareButton.clicked.connect(self.onCompare)
        ui.responseTableWidget.cellClicked.connect(self.onGroupClicked)
        ui.responseTableWidget.itemChanged.connect(self.onItemChanged)
        slicer.mrmlScene.AddObserver(slicer.mrmlScene.StartCloseEvent, lambda *args: self.forget())
        self.updateButtons()

    def _logic(self, name):
        return importlib.import_module(f"{self.logic.package.__name__}.{name}")

    def updateButtons(self):
        running = self.assessment is not None
        self.ui.compareButton.text = _("Cancel") if running else _("Compare")
        self.ui.compareButton.toolTip = _("Stop the assessment; the scene stays as it was.") if running else (
            _("Register the follow-up onto the baseline, match the lesions and report the categories."))
        self.ui.responseProgressBar.visible = running

    def onCompare(self):
        if self.assessment is not None:
            self.cancel()
            return
        self.start(self.ui.baselineResultSelector.currentNode(), self.ui.followUpResultSelector.currentNode())

    def start(self, baseline, followUp, reader=None, previous=None):
        if not confirmPlainHttp(self.logic.client):
            return
        with slicer.util.tryWithErrorDisplay(_("Could not compare the two results."), waitCursor=True):
            self.assessment = self._logic("response").ResponseAssessment(
                self.logic.requireClient(), baseline, followUp, reader=reader, previous=previous,
                on_progress=self.onProgress)
            self.ui.responseStageLabel.text = _("Sending the segments...")
            self.updateButtons()
            self.wake()

    def onProgress(self, stage, progress, message):
        self.ui.responseProgressBar.value = int(round(100 * progress))
        self.ui.responseStageLabel.text = message

    def poll(self):
        """Step the assessment going on, or start one when the reader's changes have settled; True while busy."""
        if self.assessment is None:
            if self.watch is not None and self.watch.due():
                self.reassess()
            return self.assessment is not None or self._changing()
        if self.assessment.step():
            return True
        assessment, self.assessment = self.assessment, None
        self.updateButtons()
        if assessment.state == "failed":
            self.ui.responseStageLabel.text = _("The assessment failed; the scene is unchanged.")
            slicer.util.errorDisplay(_("Could not compare the two results: {error}").format(error=assessment.error))
        elif assessment.state == "done":
            fresh = assessment.result is not self.result      # a new comparison, not a re-assessment in place
            self.show(assessment.result)
            if fresh:
                self._logic("response_views").show_side_by_side(slicer.mrmlScene, assessment.result)
        return self._changing()

    def _changing(self):
        return self.watch is not None and self.watch.changed_at is not None

    def reassess(self, targets=None):
        """Assess again with the reader's choices (the same registration); the nodes are refreshed in place."""
        result = self.result
        if result is None:
            return
        targets = self.checkedTargets() if targets is None else targets
        reader = self._logic("response_reader").reader_choices(result, targets, self.lesionInfo())
        self.stopWatching()
        self.start(result.segmentations["baseline"], result.segmentations["follow_up"], reader, result)
        if self.assessment is None:   # refused: keep watching what is shown
            self.watchResult()

    def show(self, result):
        scene = self._logic("response_scene")
        self.stopWatching()
        self.result = result
        response = result.response
        for name, (system, category, rule) in zip(LABELS, scene.categories(response)):
            getattr(self.ui, name).text = _("{system}: {category}").format(system=system, category=category)
            getattr(self.ui, name).toolTip = rule
        columns = scene.RESPONSE_COLUMNS
        checkable, editable = self._columns("target", "nodal"), self._columns("organ")
        table = self.ui.responseTableWidget
        self.filling = True
        try:
            table.clear()
            table.setColumnCount(len(columns))
            table.setHorizontalHeaderLabels([f"{c.title} ({c.unit})" if c.unit else c.title for c in columns])
            for index, column in enumerate(columns):
                table.horizontalHeaderItem(index).setToolTip(column.description or column.title)
            rows = scene.group_rows(response, result.reader)
            table.setRowCount(len(rows))
            for rowIndex, row in enumerate(rows):
                for index, column in enumerate(columns):
                    text = self._logic("lesion_view").format_cell(column.value(row), column.kind, column.unit)
                    item = qt.QTableWidgetItem("" if index in checkable else text)
                    item.setData(qt.Qt.UserRole, str(row["group"]))
                    if index in checkable and row["baseline_ids"]:
                        item.setFlags(qt.Qt.ItemIsUserCheckable | qt.Qt.ItemIsEnabled)
                        item.setCheckState(qt.Qt.Checked if row[columns[index].name] else qt.Qt.Unchecked)
                    elif index in editable and row["baseline_ids"]:
                        item.setFlags(qt.Qt.ItemIsEditable | qt.Qt.ItemIsEnabled | qt.Qt.ItemIsSelectable)
                    table.setItem(rowIndex, index, item)
            table.resizeColumnsToContents()
        finally:
            self.filling = False
        self.ui.responseStageLabel.text = (_("Drag a reference region, edit segments, tick targets or set a lesion's "
                                           "organ or node status to assess again."))
        self.watchResult()

    def checkedTargets(self):
        """Baseline lesion ids of the rows whose Target box is ticked."""
        return sorted(i for row, ids in self._groupRows() for i in ids
                      if row[self.targetColumn()].checkState() == qt.Qt.Checked)

    def lesionInfo(self):
        """Baseline lesion id -> the organ and node status the rows say (the reader's inputs to RECIST)."""
        organ, nodal = self._columns("organ")[0], self._columns("nodal")[0]
        info = {}
        for row, ids in self._groupRows():
            given = {"organ": row[organ].text().strip() or None, "nodal": row[nodal].checkState() == qt.Qt.Checked}
            info.update({i: given for i in ids})
        return info

    def _groupRows(self):
        """(the row's items by column, the group's baseline ids) for each row with baseline lesions."""
        groups = {str(row["group"]): row["baseline_ids"] for row in self.result.response.get("lesions", [])}
        table, count = self.ui.responseTableWidget, len(self._logic("response_scene").RESPONSE_COLUMNS)
        for rowIndex in range(len(groups)):
            items = [table.item(rowIndex, column) for column in range(count)]
            if items[0] is not None and groups.get(items[0].data(qt.Qt.UserRole)):
                yield items, groups[items[0].data(qt.Qt.UserRole)]

    def onItemChanged(self, item):
        if not self.filling and self.watch is not None and item.column() in self._columns("target", "organ", "nodal"):
            self.watch.touch()

    def targetColumn(self):
        return self._columns("target")[0]

    def _columns(self, *names):
        """The indices of the named columns of the response table."""
        columns = [column.name for column in self._logic("response_scene").RESPONSE_COLUMNS]
        return [columns.index(name) for name in names]

    def onGroupClicked(self, row, column):
        item = self.ui.responseTableWidget.item(row, 0)
        if item is None or self.result is None:
            return
        with slicer.util.tryWithErrorDisplay(_("Cannot show this lesion.")):
            r, a, s = self._logic("response_reader").group_focus(self.result, item.data(qt.Qt.UserRole))
            slicer.modules.markups.logic().JumpSlicesToLocation(r, a, s, True)

    def watchResult(self):
        self.watch = self._logic("response_reader").ReaderWatch(self.result, on_change=self.wake)

    def stopWatching(self):
        if self.watch is not None:
            self.watch.stop()
            self.watch = None

    def cancel(self):
        """Stop the assessment going on (the user, a scene closing); nothing changes."""
        if self.assessment is not None:
            self.assessment.cancel()
            self.assessment = None
            self.ui.responseStageLabel.text = _("Cancelled; the scene is unchanged.")
            self.updateButtons()

    def forget(self):
        """The scene is closing: stop everything and drop the result it held."""
        self.cancel()
        self.stopWatching()
        self.result = None
