"""Slicer-side logic of AttUMambaSeg, importable without the Slicer GUI.

Only the standard library and what Slicer ships (numpy, SimpleITK, vtk, MRML) may be used
here: torch never loads inside Slicer. The module file imports this package through
``AttUMambaSeg.loadLogicPackage`` so that another extension's top-level ``Logic`` package
cannot shadow it.
"""

PACKAGE_ID = "AttUMambaSeg.Logic"
