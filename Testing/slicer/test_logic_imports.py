"""The Slicer-side logic stays light and GUI-free: what it may import and reach for.

Torch or the backend package inside Slicer crashes or bloats the GUI process; qt, ctk and
``slicer.util``'s GUI helpers, or ``slicer.mrmlScene``, would tie the logic to a running
Slicer application and make it untestable on slicer-core.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

LOGIC_DIR = Path(__file__).resolve().parents[2] / "AttUMambaSeg" / "AttUMambaSegLib" / "logic"
ALLOWED_THIRD_PARTY = {"numpy", "SimpleITK", "vtk", "slicer"}
FORBIDDEN_SLICER_ATTRIBUTES = {"util", "mrmlScene", "modules", "app", "qMRMLUtils"}
MAX_LINES = 300


def _logic_files() -> list[Path]:
    return sorted(LOGIC_DIR.glob("*.py"))


@pytest.mark.parametrize("path", _logic_files(), ids=lambda p: p.name)
def test_logic_imports_only_the_standard_library_and_what_slicer_ships(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                assert node.level == 1, f"{path.name}: import siblings as 'from .x import y'"
                continue
            modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for module in modules:
            top = module.split(".")[0]
            assert top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY, f"{path.name} imports {module}"
            assert not module.startswith("slicer.util"), f"{path.name} imports {module} (GUI helpers)"
            if module.startswith("AttUMambaSeg"):
                pytest.fail(f"{path.name}: import siblings relatively, the package is loaded under a private name")


@pytest.mark.parametrize("path", _logic_files(), ids=lambda p: p.name)
def test_logic_never_reaches_for_the_application_scene_or_gui(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "slicer":
            assert node.attr not in FORBIDDEN_SLICER_ATTRIBUTES, f"{path.name} uses slicer.{node.attr}"


@pytest.mark.parametrize("path", _logic_files(), ids=lambda p: p.name)
def test_logic_modules_stay_small(path):
    assert len(path.read_text().splitlines()) < MAX_LINES
