"""The Slicer-side logic, loaded as the module file loads it (by path, under a private name)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Testing" / "backend"))  # tiny_model, loopback


def load_logic():
    name = "AttUMambaSegLogic"
    if name in sys.modules:
        return sys.modules[name]
    folder = REPO / "AttUMambaSeg" / "Logic"
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py", submodule_search_locations=[str(folder)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return package


@pytest.fixture(scope="session")
def logic():
    return load_logic()
