"""Qt parts of the AttUMambaSeg module panel, split out of the module file to keep it short.

Each panel wires one section of ``Resources/UI/AttUMambaSeg.ui`` (``self.ui``) to the Logic
facade (``AttUMambaSegLogic``) and does nothing else: no MRML work, no HTTP, no files. It lives
in ``AttUMambaSegLib`` beside the logic, a name no other extension uses on Slicer's ``sys.path``.
"""

PACKAGE_ID = "AttUMambaSegLib.widgets"
