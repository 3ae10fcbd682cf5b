"""Slicer-side logic of AttUMambaSeg, importable without the Slicer GUI.

Only the standard library and what Slicer ships (numpy, SimpleITK, vtk, MRML) may be used
here: torch never loads inside Slicer. It lives in ``AttUMambaSegLib`` (a name no other
extension uses on Slicer's shared ``sys.path``); *Reload* forgets it so edits take effect. Inside, modules import each other relatively (``from .client import ...``).

Modules, one job each: ``client`` (backend HTTP API), ``forms`` (its uploads' bodies), ``transport`` (no proxy, no redirect,
verified TLS, consent to plain HTTP), ``transfers`` and ``transfer_process`` (files to and from the
backend in a helper process, beyond the reach of Slicer's GUI thread), ``run`` (one segmentation run, stepped
from a GUI timer), ``batch`` (a folder segmented on the backend; opening a finished study),
``results`` (report -> segmentation, lines, table), ``scene_batch`` (building without
disturbing the user's scene), ``measure``
(re-measure after edits), ``export`` (files for a folder), ``dicom_export`` and ``dicom_sources``
(DICOM SEG + SR through the backend, from the series in Slicer's DICOM database), ``response``, ``response_scene`` and
``response_reader`` (baseline vs follow-up: the assessment, its nodes, the reader's changes), ``segments``, ``axes``,
``tables``, ``hierarchy``, ``volumes``, ``files``, ``geometry`` (the only place where LPS
and RAS meet), and for the module panel ``inputs`` (which volumes are CT and PET),
``backend_process`` (a backend the module starts and stops), ``connection`` (checking a
backend, its models), ``lesion_view`` (what the results table shows) and ``sample`` (the
backend's synthetic sample study, and the self-test's). Functions take the scene or nodes as arguments: in Slicer that is
``slicer.mrmlScene``, in tests a scene made on slicer-core.
"""

PACKAGE_ID = "AttUMambaSegLib.logic"
