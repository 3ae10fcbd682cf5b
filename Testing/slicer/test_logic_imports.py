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
ALLOWED_THIRD_PARTY = {"numpy", "SimpleITK", "vtk", "slicer", "pydicom"}  # pydicom: Slicer ships it (DICOMLib uses it)
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


def _private_client_calls(tree: ast.AST) -> list[str]:
    """``client._x`` or ``self.client._x``: a backend call made past :class:`BackendClient`'s public methods."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
            if name == "client":
                found.append(f"client.{node.attr} (line {node.lineno})")
    return found


@pytest.mark.parametrize("path", [p for p in _logic_files() if p.name not in ("client.py", "forms.py")],
                         ids=lambda p: p.name)
def test_backend_calls_go_through_the_clients_public_methods_and_its_one_form_builder(path):
    text = path.read_text()
    assert _private_client_calls(ast.parse(text)) == [], f"{path.name}: add a BackendClient method instead"
    assert "multipart/form-data" not in text, f"{path.name} builds a form of its own; use the client's (forms.py)"
