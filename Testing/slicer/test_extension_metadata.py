"""The Extensions Index checklist (issue 17, item 1): licence, metadata, URLs, dependencies, help link.

Each URL the extension's metadata names must point at a file of this repository (on its main
branch), so the catalogue shows the icon and screenshot the repository holds.
"""

from __future__ import annotations

import ast
import re
import struct
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RAW_PREFIX = "https://raw.githubusercontent.com/attumambaseg/AttUMambaSeg/main/"
SLICER_CORE_MODULES = {"Segmentations", "Markups", "Tables", "SubjectHierarchy", "Volumes", "DICOM", "Data"}


@pytest.fixture(scope="module")
def metadata() -> dict[str, str]:
    text = (REPO / "CMakeLists.txt").read_text()
    return dict(re.findall(r'set\((EXTENSION_\w+)\s+"([^"]*)"\)', text))


@pytest.fixture(scope="module")
def module_fields() -> dict:
    """The assignments ``self.parent.<field> = ...`` of the module class, evaluated as literals."""
    tree = ast.parse((REPO / "AttUMambaSeg" / "AttUMambaSeg.py").read_text())
    constants = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                 and isinstance(node.value, ast.Constant)}
    fields = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute):
            target = node.targets[0]
            if isinstance(target.value, ast.Attribute) and target.value.attr == "parent":
                fields[target.attr] = _text(node.value, constants)
    return fields


def _text(node, constants):
    """A literal, a list of literals, or concatenated (f-)strings with module constants filled in."""
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(v, constants) for v in node.values)
    if isinstance(node, ast.FormattedValue):
        return str(constants[node.value.id])
    if isinstance(node, ast.List):
        return [_text(v, constants) for v in node.elts]
    if isinstance(node, ast.BinOp):
        return _text(node.left, constants) + _text(node.right, constants)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        values = {k.arg: _text(k.value, constants) for k in node.keywords}
        return _text(node.func.value, constants).format(**values)
    if isinstance(node, ast.Name):
        return constants[node.id]
    if isinstance(node, ast.Call) and node.args:   # a translation: _("...") or translate("context", "...")
        return _text(node.args[-1], constants)
    return ast.literal_eval(node)


def test_the_licence_is_apache_2_everywhere():
    licence = (REPO / "LICENSE.txt").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence
    assert 'license = "Apache-2.0"' in (REPO / "Backend" / "pyproject.toml").read_text()
    assert re.search(r"^## License\s+Apache License 2\.0", (REPO / "README.md").read_text(), re.M)


def test_icon_and_screenshot_urls_resolve_to_files_of_the_repository(metadata):
    urls = [metadata["EXTENSION_ICONURL"], *metadata["EXTENSION_SCREENSHOTURLS"].split()]
    for url in urls:
        assert url.startswith(RAW_PREFIX), url
        assert (REPO / url[len(RAW_PREFIX):]).is_file(), f"{url} names no file of the repository"
    width, height = _png_size(REPO / metadata["EXTENSION_ICONURL"][len(RAW_PREFIX):])
    assert (width, height) == (128, 128), "the Extensions Index asks for a 128 × 128 icon"
    shot = REPO / metadata["EXTENSION_SCREENSHOTURLS"].split()[0][len(RAW_PREFIX):]
    assert shot.name == "slicer_result.png" and _png_size(shot)[0] >= 800   # the module's result view


def test_contributors_are_named_with_their_affiliation_in_cmake_and_module(metadata, module_fields):
    cmake = [c.strip() for c in metadata["EXTENSION_CONTRIBUTORS"].split(",")]
    for contributor in cmake:
        assert re.fullmatch(r"[^()]+ \([^()]+\)", contributor), contributor
        assert "developers" not in contributor
    assert module_fields["contributors"] == cmake


def test_homepage_and_help_link_to_the_documentation(metadata, module_fields):
    homepage = metadata["EXTENSION_HOMEPAGE"]
    assert homepage.startswith("https://github.com/attumambaseg/AttUMambaSeg")
    links = re.findall(r'href="([^"]+)"', module_fields["helpText"])
    assert links and all(link.startswith("https://github.com/attumambaseg/AttUMambaSeg#") for link in links)
    headings = {_anchor(h) for h in re.findall(r"^#+ (.+)$", (REPO / "README.md").read_text(), re.M)}
    assert {link.split("#", 1)[1] for link in links} <= headings, "the help links to a README section that exists"
    assert metadata["EXTENSION_CATEGORY"] == module_fields["categories"][0] == "Segmentation"
    assert "LICENSE.txt" in (REPO / "CMakeLists.txt").read_text()


def test_dependencies_name_the_slicer_modules_whose_logic_is_used(module_fields):
    dependencies = set(module_fields["dependencies"])
    assert dependencies <= SLICER_CORE_MODULES
    logic = "\n".join(p.read_text() for p in (REPO / "AttUMambaSeg" / "AttUMambaSegLib").rglob("*.py"))
    used = {name for name, marker in (("Segmentations", "vtkMRMLSegmentationNode"), ("Markups", "vtkMRMLMarkupsLineNode"),
                                      ("Tables", "vtkMRMLTableNode"), ("SubjectHierarchy", "SubjectHierarchy"))
            if marker in logic}
    assert used == {"Segmentations", "Markups", "Tables", "SubjectHierarchy"} <= dependencies


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])
