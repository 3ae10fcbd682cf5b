"""Static checks of the Slicer module that need no Slicer: packaging list and UI names.

Slicer packages only the files its CMakeLists lists (a missing entry ships a broken module),
and a widget name used in Python but absent from the .ui fails only at run time in Slicer.
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[2] / "AttUMambaSeg"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "AttUMambaSeg.ui"


def _cmake_listed_files() -> set[str]:
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    listed: set[str] = set()
    for block in ("MODULE_PYTHON_SCRIPTS", "MODULE_PYTHON_RESOURCES"):
        match = re.search(rf"set\({block}\s+(.*?)\)", text, re.S)
        assert match, f"{block} is missing from AttUMambaSeg/CMakeLists.txt"
        for entry in match.group(1).split():
            listed.add(entry.replace("${MODULE_NAME}", "AttUMambaSeg"))
    return listed


def _module_files() -> set[str]:
    return {
        path.relative_to(MODULE_DIR).as_posix()
        for path in MODULE_DIR.rglob("*")
        if path.is_file() and path.name != "CMakeLists.txt" and "__pycache__" not in path.parts
    }


def test_every_module_file_is_listed_in_cmake():
    missing = _module_files() - _cmake_listed_files()
    assert not missing, f"not listed in AttUMambaSeg/CMakeLists.txt (would not be packaged): {sorted(missing)}"


def test_every_cmake_entry_exists():
    absent = _cmake_listed_files() - _module_files()
    assert not absent, f"listed in AttUMambaSeg/CMakeLists.txt but missing: {sorted(absent)}"


def _ui_widgets() -> dict[str, str]:
    root = ET.parse(UI_FILE).getroot()
    return {w.get("name"): w.get("class") for w in root.iter("widget")}


def _python_ui_names() -> set[str]:
    names: set[str] = set()
    for path in MODULE_DIR.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            # self.ui.<name>
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "ui"
            ):
                names.add(node.attr)
    return names


def test_ui_file_is_designer_xml_with_a_mrml_root():
    root = ET.parse(UI_FILE).getroot()
    assert root.tag == "ui"
    top = root.find("widget")
    assert top is not None and top.get("class") == "qMRMLWidget"


def test_every_widget_used_in_python_exists_in_the_ui():
    widgets = _ui_widgets()
    missing = _python_ui_names() - set(widgets)
    assert not missing, f"used as self.ui.<name> but not in {UI_FILE.name}: {sorted(missing)}"


def test_module_file_parses_and_defines_the_scripted_classes():
    tree = ast.parse((MODULE_DIR / "AttUMambaSeg.py").read_text())
    classes = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    assert {"AttUMambaSeg", "AttUMambaSegWidget", "AttUMambaSegLogic", "AttUMambaSegTest"} <= classes
