"""Export DICOM SEG + SR (Results section): the selected result as DICOM files, optionally imported into Slicer's DICOM database.

The button is enabled only for a result whose CT came from Slicer's DICOM database (its tooltip
says why not otherwise). The export (``logic/dicom_export.py``) runs while the GUI stays free,
stepped from the module's timer by :meth:`DicomExportPanel.poll`; the button cancels meanwhile.
The files go to the Results section's export folder, existing ones replaced only after asking;
then, when Slicer has a DICOM database, the panel offers to import them so the DICOM module
lists them beside the CT and PET.
"""

import importlib
import os

import slicer
from slicer.i18n import tr as _

from .backend_panel import confirmPlainHttp, saveSetting

DESCRIPTION = (_("Write lesions_seg.dcm (DICOM SEG of the segments, on the CT's slices) and lesions_sr.dcm (DICOM SR "
               "TID 1500: per lesion volume, SUV max/mean/peak, TLG, RECIST axes) to the folder."))


def dicomDatabase():
    """Slicer's DICOM database when it is open, else None."""
    database = getattr(slicer, "dicomDatabase", None)
    return database if database is not None and database.isOpen else None


def importIntoDicomDatabase(paths):
    """Add the files to Slicer's DICOM database (copied into it), as the DICOM module's import does."""
    import ctk  # the application's (imported here: the panel's other parts run without it in tests)

    indexer = ctk.ctkDICOMIndexer()
    for path in paths:
        indexer.addFile(slicer.dicomDatabase, str(path), True)
    indexer.waitForImportFinished()


class DicomExportPanel:
    """``segmentation()`` gives the selected lesion segmentation node (or None); ``changed()`` is called
    when an export starts or ends, ``wake()`` when there is something for :meth:`poll` to step."""

    def __init__(self, ui, logic, segmentation, changed, wake):
        self.ui, self.logic, self.segmentation, self.changed, self.wake = ui, logic, segmentation, changed, wake
        self.export = None  # the DicomExport in progress
        self.ui.exportDicomButton.clicked.connect(self.onExportDicom)

    @property
    def busy(self):
        return self.export is not None

    def _logic(self, name):
        return importlib.import_module(f"{self.logic.package.__name__}.{name}")

    def updateButtons(self, hasResult, connected):
        button = self.ui.exportDicomButton
        if self.export is not None:
            button.text, button.enabled, button.toolTip = _("Cancel DICOM export"), True, _("Stop; no file is written.")
            return
        reason = self._logic("dicom_sources").unavailable_reason(self.segmentation(), dicomDatabase())
        if not reason and not connected:
            reason = _("Start or connect to a backend (Backend section): it writes the DICOM files.")
        button.text = _("Export DICOM SEG + SR")
        button.enabled = hasResult and not reason
        button.toolTip = reason or DESCRIPTION

    def onExportDicom(self):
        if self.export is not None:
            self.cancel()
            return
        folder = self.ui.exportDirectoryButton.directory
        saveSetting("ExportFolder", folder)
        existing = self._logic("dicom_export").existing_dicom_files(folder)
        if existing and not slicer.util.confirmOkCancelDisplay(
                _("These files exist already. Overwrite them?") + "\n\n" + "\n".join(existing),
                windowTitle=_("Export DICOM")):
            return
        if not confirmPlainHttp(self.logic.client):
            return
        with slicer.util.tryWithErrorDisplay(_("Could not export DICOM SEG and SR."), waitCursor=True):
            self.export = self._logic("dicom_export").DicomExport(
                self.logic.requireClient(), self.segmentation(), folder, dicomDatabase(), overwrite=bool(existing),
                on_progress=self.onProgress)
            self.changed()
            self.wake()

    def onProgress(self, stage, progress, message):
        self.ui.stageLabel.text = _("DICOM export ({percent:.0f}%): {message}").format(
            percent=100 * progress, message=message)

    def poll(self):
        """Step the export going on; True while it goes on."""
        if self.export is None or self.export.step():
            return self.export is not None
        export, self.export = self.export, None
        self.changed()
        if export.state == "failed":
            self.ui.stageLabel.text = _("DICOM export failed; no file was written.")
            slicer.util.errorDisplay(_("Could not export DICOM SEG and SR: {error}").format(error=export.error))
        elif export.state == "done":
            self.offerImport(export.result)
        return False

    def offerImport(self, files):
        folder = os.path.dirname(str(files["seg"]))
        self.ui.stageLabel.text = _("Exported DICOM SEG and SR to {folder}.").format(folder=folder)
        if dicomDatabase() is None or not slicer.util.confirmYesNoDisplay(
                _("Import the DICOM SEG and SR into Slicer's DICOM database? They are then listed with the CT and PET "
                "in the DICOM module, to load or send."), windowTitle=_("Export DICOM")):
            return
        with slicer.util.tryWithErrorDisplay(_("Could not import the files into the DICOM database."), waitCursor=True):
            importIntoDicomDatabase(files.values())
            self.ui.stageLabel.text = _("Exported DICOM SEG and SR to {folder} and imported them into the DICOM "
                                        "database.").format(folder=folder)

    def cancel(self):
        """Stop an export going on (the user, a scene closing); nothing is written."""
        if self.export is not None:
            self.export.cancel()
            self.export = None
            self.ui.stageLabel.text = _("DICOM export cancelled; no file was written.")
            self.changed()
