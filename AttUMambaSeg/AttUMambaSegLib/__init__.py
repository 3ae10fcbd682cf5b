"""AttUMambaSeg's library: ``logic`` (no Qt, testable on slicer-core) and ``widgets`` (the panels)."""
