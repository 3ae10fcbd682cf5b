"""Static checks of the Slicer module that need no Slicer: packaging list, UI names and classes, imports.

Slicer packages only the files its CMakeLists lists (a missing entry ships a broken module),
and a widget name used in Python but absent from the .ui, a widget of another class than the
code expects, or a parameter the GUI connector cannot bind fails only at run time in Slicer.
"""

from __future__ import annotations

import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

MODULE_DIR = Path(__file__).resolve().parents[2] / "AttUMambaSeg"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "AttUMambaSeg.ui"
MODULE_FILE = MODULE_DIR / "AttUMambaSeg.py"
#: The Qt side: the module file and its Qt helpers (the logic package has its own checks in test_logic_imports.py).
GUI_FILES = [MODULE_FILE, *sorted((MODULE_DIR / "AttUMambaSegLib" / "widgets").glob("*.py"))]
#: The in-Slicer widget test: run by ctest and Reload and Test, never here, so checked statically.
WIDGET_TEST_DIR = MODULE_DIR / "Testing" / "Python"
WIDGET_TEST_FILES = sorted(WIDGET_TEST_DIR.glob("*.py"))
GUI_MODULES = {"qt", "ctk", "vtk", "slicer"}  # what Slicer's embedded Python provides the GUI
MAX_MODULE_FILE_LINES = 400

_BUTTONS = {"QPushButton", "QToolButton", "QCheckBox", "QRadioButton", "ctkCheckablePushButton", "ctkPushButton"}
_COMBOS = {"QComboBox", "ctkComboBox"}
#: What a use of ``self.ui.<name>.<member>`` says about the widget's class.
MEMBER_CLASSES: dict[str, set[str]] = {
    **{m: {"qMRMLNodeComboBox"} for m in ("currentNode", "setCurrentNode", "currentNodeChanged", "nodeTypes",
                                         "setMRMLScene")},
    **{m: {"ctkPathLineEdit"} for m in ("currentPath", "currentPathChanged")},
    **{m: {"ctkDirectoryButton"} for m in ("directory", "directoryChanged")},
    **{m: _COMBOS for m in ("addItem", "findData", "itemData", "currentIndex", "currentIndexChanged", "currentText")},
    **{m: {"QTableWidget"} for m in ("cellClicked", "setRowCount", "setColumnCount", "setItem", "item",
                                     "setHorizontalHeaderLabels", "horizontalHeaderItem", "resizeColumnsToContents",
                                     "cellDoubleClicked", "itemSelectionChanged", "currentRow", "selectedItems")},
    "clicked": _BUTTONS,
    "click": _BUTTONS,
    "rowCount": {"QTableWidget"},
    "checked": _BUTTONS,
    "value": {"QProgressBar", "QSpinBox", "QDoubleSpinBox", "QSlider", "ctkSliderWidget"},
    "editingFinished": {"QLineEdit", "QSpinBox", "QDoubleSpinBox"},
    "text": {"QLabel", "QLineEdit", "ctkCollapsibleButton"} | _BUTTONS,
}
#: Members every QWidget has.
ANY_WIDGET = {"enabled", "toolTip", "setToolTip", "setVisible", "show", "hide", "visible", "blockSignals", "clear",
              "setEnabled"}


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
    """What the extension packages: everything but the CMake files and the tests under Testing/ (run, not shipped)."""
    return {
        path.relative_to(MODULE_DIR).as_posix()
        for path in MODULE_DIR.rglob("*")
        if path.is_file() and path.name != "CMakeLists.txt" and "__pycache__" not in path.parts
        and path.relative_to(MODULE_DIR).parts[0] != "Testing"
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


# --- .ui structure -------------------------------------------------------------------------------
def _ui_root() -> ET.Element:
    return ET.parse(UI_FILE).getroot()


def test_ui_file_is_qt_designer_4_0():
    root = _ui_root()
    assert root.tag == "ui" and root.get("version") == "4.0"
    assert root.findtext("class") == "AttUMambaSeg"
    assert root.find("widget").get("name") == "AttUMambaSeg"


def test_every_custom_widget_is_declared_as_slicer_ui_files_do():
    declared = {c.findtext("class"): c for c in _ui_root().iter("customwidget")}
    used = {cls for cls in _ui_widgets().values() if not cls.startswith("Q")}
    assert used <= set(declared), f"declare in <customwidgets>: {sorted(used - set(declared))}"
    for name, declaration in declared.items():
        assert declaration.findtext("header") == f"{name}.h" and declaration.findtext("extends") == "QWidget"


def test_every_node_combo_box_gets_the_scene_from_the_root():
    root = _ui_root()
    connected = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("sender") == "AttUMambaSeg" and c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
                 and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    combos = {name for name, cls in _ui_widgets().items() if cls == "qMRMLNodeComboBox"}
    assert combos and combos == connected


def test_the_token_is_typed_like_a_password():
    widget = next(w for w in _ui_root().iter("widget") if w.get("name") == "backendTokenLineEdit")
    echo = next(p for p in widget.iter("property") if p.get("name") == "echoMode")
    assert echo.findtext("enum") == "QLineEdit::Password"


# --- Python use of the .ui -------------------------------------------------------------------------
def _ui_member_uses(files: list[Path] = GUI_FILES) -> dict[str, set[str]]:
    """``<...>.ui.<name>.<member>`` in ``files``: members by widget name."""
    uses: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                    and isinstance(node.value.value, ast.Attribute) and node.value.value.attr == "ui"):
                uses.setdefault(node.value.attr, set()).add(node.attr)
    return uses


def test_every_widget_has_the_class_its_use_needs():
    uses = _ui_member_uses()
    assert {"ctSelector", "segmentButton", "lesionTableWidget", "backendPythonPathLineEdit", "batchTableWidget",
            "batchInputPathLineEdit", "batchRunButton", "loadSampleButton", "exportDicomButton"} <= set(uses)
    problems = _class_problems(uses)
    assert not problems, "\n".join(problems)


def _class_problems(uses: dict[str, set[str]]) -> list[str]:
    widgets = _ui_widgets()
    problems = []
    for name, members in sorted(uses.items()):
        cls = widgets.get(name)
        for member in sorted(members):
            if member in ANY_WIDGET:
                continue
            if member not in MEMBER_CLASSES:
                problems.append(f"{name}.{member}: unknown use; add it to MEMBER_CLASSES with the classes that have it")
            elif cls not in MEMBER_CLASSES[member]:
                problems.append(f"{name} is a {cls} in the .ui, but .{member} needs one of {sorted(MEMBER_CLASSES[member])}")
    return problems


# --- the in-Slicer widget test (Testing/Python) ------------------------------------------------------
def test_the_widget_test_uses_only_widgets_of_the_ui_with_the_classes_it_needs():
    uses = _ui_member_uses(WIDGET_TEST_FILES)
    assert {"loadSampleButton", "segmentButton", "updateMeasurementsButton", "exportButton", "exportDicomButton",
            "lesionTableWidget", "ctSelector", "petSelector"} <= set(uses)
    missing = set(uses) - set(_ui_widgets())
    assert not missing, f"the widget test uses {sorted(missing)}, which {UI_FILE.name} does not have"
    problems = _class_problems(uses)
    assert not problems, "\n".join(problems)


def test_the_widget_test_is_registered_with_ctest():
    assert WIDGET_TEST_FILES, "no in-Slicer widget test in AttUMambaSeg/Testing/Python"
    registered = (WIDGET_TEST_DIR / "CMakeLists.txt").read_text()
    for path in WIDGET_TEST_FILES:
        assert f"slicer_add_python_unittest(SCRIPT ${{CMAKE_CURRENT_SOURCE_DIR}}/{path.name})" in registered
    assert "add_subdirectory(Python)" in (MODULE_DIR / "Testing" / "CMakeLists.txt").read_text()
    testing = re.search(r"if\(BUILD_TESTING\)(.*?)endif\(\)", (MODULE_DIR / "CMakeLists.txt").read_text(), re.S)
    assert testing and "add_subdirectory(Testing)" in testing.group(1)


@pytest.mark.parametrize("path", WIDGET_TEST_FILES, ids=lambda p: p.name)
def test_the_widget_test_is_lint_clean(path):
    """It never runs here: pyflakes finds its undefined names, unused imports and syntax errors."""
    import io

    from pyflakes.api import check
    from pyflakes.reporter import Reporter

    found = io.StringIO()
    assert check(path.read_text(), str(path), Reporter(found, found)) == 0, found.getvalue()


# --- the parameter node and connectGui ---------------------------------------------------------------
def _parameter_fields() -> dict[str, ast.expr]:
    tree = ast.parse(MODULE_FILE.read_text())
    wrapped = [node for node in tree.body if isinstance(node, ast.ClassDef)
               and any(getattr(d, "id", None) == "parameterNodeWrapper" for d in node.decorator_list)]
    assert len(wrapped) == 1, "one @parameterNodeWrapper class in the module file"
    return {statement.target.id: statement.annotation for statement in wrapped[0].body
            if isinstance(statement, ast.AnnAssign)}


def _parameter_widgets() -> dict[str, tuple[str, ET.Element]]:
    """SlicerParameterName -> (widget class, widget element)."""
    found = {}
    for widget in _ui_root().iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                found[prop.findtext("string")] = (widget.get("class"), widget)
    return found


def _base_type(annotation: ast.expr) -> str:
    if isinstance(annotation, ast.Subscript) and getattr(annotation.value, "id", "") == "Annotated":
        return ast.unparse(annotation.slice.elts[0])
    return ast.unparse(annotation)


def _choices(annotation: ast.expr) -> list | None:
    if isinstance(annotation, ast.Subscript) and getattr(annotation.value, "id", "") == "Annotated":
        for extra in annotation.slice.elts[1:]:
            if isinstance(extra, ast.Call) and getattr(extra.func, "id", "") == "Choice":
                return ast.literal_eval(extra.args[0])
    return None


#: Slicer's GUI connectors: the exact widget class each field type binds to.
CONNECTOR_CLASS = {"bool": {"QCheckBox", "QPushButton"}, "float": {"QDoubleSpinBox", "ctkSliderWidget"},
                   "int": {"QSpinBox", "QSlider"}, "str": {"QLineEdit", "QComboBox", "QTextEdit"},
                   "pathlib.Path": {"ctkPathLineEdit", "ctkDirectoryButton"}}
#: Fields the code sets itself (their widget is filled at run time), so no widget carries their name.
SET_BY_CODE = {"model"}


def test_every_parameter_widget_binds_to_a_field_of_its_type():
    fields = _parameter_fields()
    widgets = _parameter_widgets()
    assert set(widgets) == set(fields) - SET_BY_CODE, "each field but those set by code has one widget"
    for name, (cls, element) in widgets.items():
        annotation = fields[name]
        base = _base_type(annotation)
        if base.startswith("vtkMRML"):
            assert cls == "qMRMLNodeComboBox", f"{name}: a node field binds to a qMRMLNodeComboBox, not {cls}"
            node_types = [s.text for p in element.findall("property") if p.get("name") == "nodeTypes"
                          for s in p.iter("string")]
            assert node_types == [base], f"{name}: the combo box lists {node_types}, the field holds {base}"
            continue
        assert cls in CONNECTOR_CLASS[base], f"{name}: a {base} field cannot bind to a {cls}"
        if cls == "QComboBox":
            choices = _choices(annotation)
            assert choices, f"{name}: Slicer binds a QComboBox only to an Annotated[..., Choice([...])] field"
            items = [i.findtext("property/string") for i in element.findall("item")]
            assert items == [str(c) for c in choices], f"{name}: the .ui items {items} differ from {choices}"


# --- imports and size ---------------------------------------------------------------------------------
def _imports(tree: ast.AST, top_level_only: bool) -> list[tuple[str, int]]:
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level))
    return found


@pytest.mark.parametrize("path", GUI_FILES, ids=lambda p: p.relative_to(MODULE_DIR).as_posix())
def test_gui_files_import_only_what_slicer_ships_at_module_level(path):
    for module, level in _imports(ast.parse(path.read_text()), top_level_only=True):
        if level:
            continue  # a sibling of the private package
        top = module.split(".")[0]
        assert top in sys.stdlib_module_names or top in GUI_MODULES, f"{path.name} imports {module} at module level"


@pytest.mark.parametrize("path", GUI_FILES, ids=lambda p: p.relative_to(MODULE_DIR).as_posix())
def test_gui_files_never_import_torch_or_the_backend(path):
    for module, _ in _imports(ast.parse(path.read_text()), top_level_only=False):
        top = module.split(".")[0]
        assert top not in {"torch", "attumamba", "monai", "nnunetv2", "mamba_ssm", "requests"}, \
            f"{path.name} imports {module}: the backend's packages never load inside Slicer"


def test_module_file_stays_thin():
    assert len(MODULE_FILE.read_text().splitlines()) <= MAX_MODULE_FILE_LINES


USER_TEXT_ATTRIBUTES = {"text", "toolTip", "placeholderText", "windowTitle", "title", "helpText", "acknowledgementText"}
DIALOGS = {"errorDisplay", "confirmOkCancelDisplay", "confirmYesNoDisplay", "tryWithErrorDisplay", "infoDisplay",
           "warningDisplay", "setText", "setToolTip"}


def _untranslated(node) -> list:
    """String literals (plain or f-strings) that reach the user without Slicer's translation function."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.strip():
        return [node]
    if isinstance(node, ast.JoinedStr):
        return [node]
    if isinstance(node, ast.IfExp):
        return _untranslated(node.body) + _untranslated(node.orelse)
    if isinstance(node, ast.BoolOp):
        return [found for value in node.values for found in _untranslated(value)]
    if isinstance(node, ast.BinOp):
        return _untranslated(node.left) + _untranslated(node.right)
    if isinstance(node, ast.Tuple):
        return [found for value in node.elts for found in _untranslated(value)]
    return []


@pytest.mark.parametrize("path", GUI_FILES, ids=lambda p: p.relative_to(MODULE_DIR).as_posix())
def test_user_facing_strings_go_through_slicers_translation(path):
    """Labels, tooltips and dialogs are wrapped in ``_()`` (``slicer.i18n.tr``) so Slicer's language packs
    can translate them; the self-test's messages are for developers and stay as they are."""
    tree = ast.parse(path.read_text())
    tests = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name.endswith("Test")]
    in_test = {id(inner) for cls in tests for inner in ast.walk(cls)}
    bad = []
    for node in ast.walk(tree):
        if id(node) in in_test:
            continue
        if isinstance(node, ast.Assign):
            targets = node.targets[0].elts if isinstance(node.targets[0], ast.Tuple) else node.targets
            values = node.value.elts if isinstance(node.targets[0], ast.Tuple) and isinstance(node.value, ast.Tuple) \
                else [node.value] * len(targets)
            for target, value in zip(targets, values):
                if isinstance(target, ast.Attribute) and target.attr in USER_TEXT_ATTRIBUTES:
                    bad += _untranslated(value)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            if node.func.attr in DIALOGS:
                bad += _untranslated(node.args[0])
            bad += [found for k in node.keywords if k.arg == "windowTitle" for found in _untranslated(k.value)]
    assert not bad, "untranslated user-facing text: " + "; ".join(
        f"line {n.lineno}: {ast.get_source_segment(path.read_text(), n)[:60]}" for n in bad)
    if any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == "_" for n in ast.walk(tree)):
        assert "from slicer.i18n import tr as _" in path.read_text()
