"""Qt parts of the AttUMambaSeg module panel, split out of the module file to keep it short.

Each panel wires one section of ``Resources/UI/AttUMambaSeg.ui`` (``self.ui``) to the Logic
facade (``AttUMambaSegLogic``) and does nothing else: no MRML work, no HTTP, no files. The
module file loads this package by path under the private name ``AttUMambaSegWidgets`` (as it
loads ``Logic/``), so another extension's ``Widgets`` package cannot shadow it.
"""

PACKAGE_ID = "AttUMambaSeg.Widgets"
